//! `rulake`: RuLake's one binary. The command line lives in
//! `rulake::command`, so this file stays a single call.

fn main() -> anyhow::Result<()> {
    rulake::command::main()
}
