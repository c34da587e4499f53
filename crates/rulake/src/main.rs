//! `rulake`: RuLake's one binary. The command line lives in
//! `rulake::command` and the allocator in `rulake::allocator`, so this
//! file stays a single call.

fn main() -> anyhow::Result<()> {
    rulake::command::main()
}
