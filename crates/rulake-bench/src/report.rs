//! `docs/BENCHMARKS.md` is shared by several benchmark commands (core
//! engine, catalog, gRPC, lake formats). Each owns one marked section and
//! rewrites only that section, so rerunning one benchmark never erases the
//! figures another one measured.

use std::path::Path;

const HEADER: &str = "# RuLake benchmarks\n\n\
Each section below is the output of one command, named in the section; rerun it to reproduce.\n\
Every figure in one section comes from the same run on the same data.\n";

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- section:{name} begin -->"),
        format!("<!-- section:{name} end -->"),
    )
}

/// Replace the section `name` of the Markdown file at `path` with `body`,
/// appending it when the file has no such section yet, creating the file
/// when it does not exist. The write is atomic (temporary file + rename).
pub fn write_section(path: &Path, name: &str, body: &str) -> std::io::Result<()> {
    let current = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HEADER.to_string(),
        Err(e) => return Err(e),
    };
    let updated = splice(&current, name, body);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, updated)?;
    std::fs::rename(&tmp, path)
}

fn splice(current: &str, name: &str, body: &str) -> String {
    let (begin, end) = markers(name);
    let block = format!("{begin}\n{}\n{end}", body.trim_end());
    match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{block}{}", &current[..b], &current[e + end.len()..])
        }
        _ => format!("{}\n{block}\n", current.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::splice;

    #[test]
    fn replaces_only_its_own_section() {
        let one = splice("# T\n", "a", "A1");
        let two = splice(&one, "b", "B1");
        let three = splice(&two, "a", "A2\nmore");
        assert!(three.contains("A2\nmore"));
        assert!(!three.contains("A1"));
        assert!(three.contains("B1"));
        assert!(three.starts_with("# T\n"));
        assert!(three.find("A2").unwrap() < three.find("B1").unwrap());
    }
}
