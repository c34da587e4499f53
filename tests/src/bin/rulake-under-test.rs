//! The `rulake` command line as the tests run it: the same library call as
//! the `rulake` binary, built by cargo for this crate so the processes under
//! test always match the sources (see `process::rulake_bin`).

fn main() -> anyhow::Result<()> {
    rulake::command::main()
}
