# RuLake image: the `rulake` server binary and the `rulake-operator`.
#
# Both base images are build arguments, so one file builds with no image
# registry at all and in an ordinary registry-connected pipeline:
#
#   bash ci/base-image.sh && docker build -t rulake:dev .
#       bases made here from Debian's packages; compiles in the builder
#   docker build --build-arg BINARIES=dist --build-arg BUILDER=rulake-base:bookworm .
#       (after `bash ci/base-image.sh --base-only`)
#       copies `dist/rulake` and `dist/rulake-operator`, built on the host
#   docker build --build-arg BUILDER=rust:1.95-bookworm \
#                --build-arg BASE=gcr.io/distroless/cc-debian12:nonroot .
#       a pipeline with a registry (BASE needs glibc and CA certificates;
#       the meta role's command also needs /bin/sh)
#
# Only the classic builder's features are used (no `RUN --mount`), so it
# builds with or without BuildKit. The final stage holds the two binaries
# on the base, runs as the unprivileged user 65532, and writes nothing
# outside mounted volumes (RuLake pods mount their data directory and an
# emptyDir at /tmp), so it runs with a read-only root filesystem.

ARG BASE=rulake-base:bookworm
ARG BUILDER=rulake-builder:bookworm

# --- binaries ----------------------------------------------------------------
FROM ${BUILDER} AS build
# `source`: compile here; `dist`: take the host's build from dist/.
ARG BINARIES=source
WORKDIR /src
COPY . .
RUN set -e; mkdir -p /out; \
    if [ "$BINARIES" = dist ]; then \
      cp dist/rulake dist/rulake-operator /out/; \
    else \
      cargo build --release --locked -p rulake -p rulake-operator; \
      cp target/release/rulake target/release/rulake-operator /out/; \
    fi; \
    chmod 0755 /out/rulake /out/rulake-operator

# --- run ---------------------------------------------------------------------
FROM ${BASE}
COPY --from=build /out/rulake /out/rulake-operator /usr/local/bin/
USER 65532:65532
WORKDIR /var/lib/rulake
ENV RULAKE_DATA_DIR=/var/lib/rulake
EXPOSE 50051 7700 9090
# Pods of a RuLakeCluster pass only arguments (`shard ...`, `coordinator ...`):
# the entrypoint must stay `rulake`. Run alone, the image serves with the
# auth config mounted at /etc/rulake/auth.json (docs/security.md); it does
# not serve a network port without authentication.
ENTRYPOINT ["rulake"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--data-dir", "/var/lib/rulake", "--auth-config", "/etc/rulake/auth.json"]
