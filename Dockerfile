# RuLake image: the `rulake` server binary and the `rulake-operator`.
#
#   docker build -t rulake/rulake:0.1.0 .
#
# The final stage runs as an unprivileged user (65532), writes nothing
# outside mounted volumes (RuLake pods mount their data directory and an
# emptyDir at /tmp), and so runs with a read-only root filesystem. It keeps
# a POSIX shell because the meta role's command derives its Raft id from
# the pod's ordinal.

# --- build -----------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY operator ./operator
COPY proto ./proto
COPY tests ./tests
COPY chaos ./chaos
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p rulake -p rulake-operator \
    && mkdir -p /out \
    && cp target/release/rulake target/release/rulake-operator /out/

# --- run -------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 65532 rulake \
    && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/rulake --shell /usr/sbin/nologin rulake \
    && install -d -o 65532 -g 65532 /var/lib/rulake
COPY --from=build /out/rulake /out/rulake-operator /usr/local/bin/
USER 65532:65532
WORKDIR /var/lib/rulake
ENV RULAKE_DATA_DIR=/var/lib/rulake
EXPOSE 50051 7700 9090
# Pods of a RuLakeCluster pass only arguments (`shard ...`, `coordinator ...`):
# the entrypoint must stay `rulake`.
ENTRYPOINT ["rulake"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--data-dir", "/var/lib/rulake"]
