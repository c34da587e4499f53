//! Prints the RuLake CRDs as one multi-document YAML stream, or with a
//! directory argument writes one file per CRD there:
//! `cargo run -p rulake-operator --bin crdgen -- charts/rulake/crds`.
//! The `crds_match_the_chart` test fails when the chart's copy drifts.

fn main() -> anyhow::Result<()> {
    match std::env::args_os().nth(1) {
        Some(dir) => {
            let dir = std::path::PathBuf::from(dir);
            for (name, yaml) in rulake_operator::crd::crd_files()? {
                std::fs::write(dir.join(name), yaml)?;
            }
        }
        None => print!("{}", rulake_operator::crd::crd_yaml()?),
    }
    Ok(())
}
