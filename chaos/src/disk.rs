//! A small disk under a member's data directory, filled on demand: what a
//! full volume looks like to the process (ENOSPC on the next write),
//! without filling the machine's own disk.
//!
//! The directory's contents move onto a tmpfs mounted over it while the
//! member is down, so it comes back with its data on a disk that can run
//! out. Needs root (`mount`). Unmounted (lazily) when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted over a data directory.
pub struct SmallDisk {
    dir: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    /// Move `dir`'s contents onto a new tmpfs of `bytes` mounted over it.
    pub fn mount_over(dir: &Path, bytes: u64) -> anyhow::Result<SmallDisk> {
        let aside = dir.with_extension("on-disk");
        std::fs::create_dir_all(dir)?;
        std::fs::rename(dir, &aside)?;
        std::fs::create_dir_all(dir)?;
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
            .arg("tmpfs")
            .arg(dir))?;
        run(Command::new("cp").arg("-a").arg(aside.join(".")).arg(dir))?;
        std::fs::remove_dir_all(&aside)?;
        Ok(SmallDisk {
            dir: dir.to_owned(),
            filler: dir.join("filler"),
        })
    }

    /// The directory it is mounted over.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Write until the disk is full.
    pub fn fill(&self) {
        use std::io::Write;
        let Ok(mut f) = std::fs::File::create(&self.filler) else {
            return;
        };
        let block = vec![0u8; 1 << 16];
        while f.write_all(&block).is_ok() {}
        // The last bytes, a block at a time was too coarse.
        while f.write_all(&[0u8; 512]).is_ok() {}
        let _ = f.sync_all();
    }

    /// Free the space again.
    pub fn unfill(&self) {
        let _ = std::fs::remove_file(&self.filler);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        anyhow::bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
