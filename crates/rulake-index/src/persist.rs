//! The on-disk form of a partition, so a restarted shard loads what it
//! built instead of reading the lake again.
//!
//! Layout (little-endian): magic `RLKIVF01`, format version, dimension,
//! metric, seed, the quantizer, every list, the vectors, the id table, the
//! tombstones and the drift counters, then a CRC-32 of everything before
//! it. The rotation is not stored: it is a pure function of (dimension,
//! seed). A file that fails any check is rejected as [`IndexError::Corrupt`]
//! and the caller rebuilds from the lake.

use crate::error::{IndexError, Result};
use crate::ivf::{IdTable, List, PartitionIndex, Parts};
use rulake_types::{Metric, VectorId};
use std::io::{Read, Write};

const MAGIC: &[u8; 8] = b"RLKIVF01";
/// 2: lists carry the 8-bit refinement codes.
const VERSION: u32 = 2;
const CHUNK: usize = 16 * 1024;

struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, b: &[u8]) -> Result<()> {
        self.crc.update(b);
        self.inner.write_all(b)?;
        Ok(())
    }
    fn u8(&mut self, v: u8) -> Result<()> {
        self.put(&[v])
    }
    fn u32(&mut self, v: u32) -> Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn f64(&mut self, v: f64) -> Result<()> {
        self.put(&v.to_le_bytes())
    }
    fn f32s(&mut self, v: &[f32]) -> Result<()> {
        self.u64(v.len() as u64)?;
        let mut buf = Vec::with_capacity(CHUNK * 4);
        for c in v.chunks(CHUNK) {
            buf.clear();
            c.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
            self.put(&buf)?;
        }
        Ok(())
    }
    fn u32s(&mut self, v: &[u32]) -> Result<()> {
        self.u64(v.len() as u64)?;
        let mut buf = Vec::with_capacity(CHUNK * 4);
        for c in v.chunks(CHUNK) {
            buf.clear();
            c.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
            self.put(&buf)?;
        }
        Ok(())
    }
    fn u64s(&mut self, v: &[u64]) -> Result<()> {
        self.u64(v.len() as u64)?;
        let mut buf = Vec::with_capacity(CHUNK * 8);
        for c in v.chunks(CHUNK) {
            buf.clear();
            c.iter()
                .for_each(|x| buf.extend_from_slice(&x.to_le_bytes()));
            self.put(&buf)?;
        }
        Ok(())
    }
    fn str(&mut self, s: &str) -> Result<()> {
        self.u32(s.len() as u32)?;
        self.put(s.as_bytes())
    }
    fn bytes(&mut self, v: &[u8]) -> Result<()> {
        self.u64(v.len() as u64)?;
        v.chunks(CHUNK * 4).try_for_each(|c| self.put(c))
    }
}

struct CrcReader<R> {
    inner: R,
    crc: crc32fast::Hasher,
    /// Refuse lengths beyond what the file could hold.
    limit: u64,
}

fn corrupt(m: impl Into<String>) -> IndexError {
    IndexError::Corrupt(m.into())
}

impl<R: Read> CrcReader<R> {
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut b = vec![0u8; n];
        self.inner.read_exact(&mut b).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                corrupt("truncated")
            } else {
                IndexError::Io(e)
            }
        })?;
        self.crc.update(&b);
        Ok(b)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn len(&mut self, elem: u64) -> Result<usize> {
        let n = self.u64()?;
        if n.saturating_mul(elem) > self.limit {
            return Err(corrupt(format!("length {n} exceeds the file size")));
        }
        Ok(n as usize)
    }
    fn f32s(&mut self) -> Result<Vec<f32>> {
        let n = self.len(4)?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let m = (n - out.len()).min(CHUNK);
            let b = self.take(m * 4)?;
            out.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("4"))),
            );
        }
        Ok(out)
    }
    fn u32s(&mut self) -> Result<Vec<u32>> {
        let n = self.len(4)?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let m = (n - out.len()).min(CHUNK);
            let b = self.take(m * 4)?;
            out.extend(
                b.chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4"))),
            );
        }
        Ok(out)
    }
    fn u64s(&mut self) -> Result<Vec<u64>> {
        let n = self.len(8)?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let m = (n - out.len()).min(CHUNK);
            let b = self.take(m * 8)?;
            out.extend(
                b.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8"))),
            );
        }
        Ok(out)
    }
    fn bytes(&mut self) -> Result<Vec<u8>> {
        let n = self.len(1)?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let m = (n - out.len()).min(CHUNK * 4);
            out.extend_from_slice(&self.take(m)?);
        }
        Ok(out)
    }
    fn str(&mut self) -> Result<String> {
        let n = self.u32()? as u64;
        if n > self.limit {
            return Err(corrupt("string length exceeds the file size"));
        }
        String::from_utf8(self.take(n as usize)?).map_err(|_| corrupt("id is not UTF-8"))
    }
}

fn metric_tag(m: Metric) -> u8 {
    match m {
        Metric::L2 => 0,
        Metric::Cosine => 1,
        Metric::InnerProduct => 2,
    }
}

impl PartitionIndex {
    /// Serialise the index.
    pub fn write_to<W: Write>(&self, w: W) -> Result<()> {
        let mut w = CrcWriter {
            inner: w,
            crc: crc32fast::Hasher::new(),
        };
        let (centroids, lists, tombstones, seed, drift) = self.parts();
        w.put(MAGIC)?;
        w.u32(VERSION)?;
        w.u32(self.dim() as u32)?;
        w.u8(metric_tag(self.metric()))?;
        w.u64(seed)?;
        w.f32s(centroids)?;
        w.u64(lists.len() as u64)?;
        for l in lists {
            w.u32s(&l.pos)?;
            w.f32s(&l.norm_sq)?;
            w.f32s(&l.scale)?;
            w.f32s(&l.ones)?;
            w.u64s(&l.codes)?;
            w.bytes(&l.fine)?;
            w.f32s(l.fine_grid.as_flattened())?;
        }
        w.f32s(self.vectors())?;
        match self.ids() {
            IdTable::U64(v) => {
                w.u8(0)?;
                w.u64s(v)?;
            }
            IdTable::Str(v) => {
                w.u8(1)?;
                w.u64(v.len() as u64)?;
                for s in v {
                    w.str(s)?;
                }
            }
            IdTable::Mixed(v) => {
                w.u8(2)?;
                w.u64(v.len() as u64)?;
                for id in v {
                    match id {
                        VectorId::U64(x) => {
                            w.u8(0)?;
                            w.u64(*x)?;
                        }
                        VectorId::Str(s) => {
                            w.u8(1)?;
                            w.str(s)?;
                        }
                    }
                }
            }
        }
        w.u64s(tombstones)?;
        for d in drift {
            w.f64(d)?;
        }
        let crc = w.crc.clone().finalize();
        w.inner.write_all(&crc.to_le_bytes())?;
        w.inner.flush()?;
        Ok(())
    }

    /// Load an index written by [`PartitionIndex::write_to`]; `size` is the
    /// file size, used to reject absurd lengths before allocating.
    pub fn read_from<R: Read>(r: R, size: u64) -> Result<Self> {
        let mut r = CrcReader {
            inner: r,
            crc: crc32fast::Hasher::new(),
            limit: size,
        };
        if r.take(8)? != MAGIC {
            return Err(corrupt("not a RuLake partition file"));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(corrupt(format!(
                "format version {version}, expected {VERSION}"
            )));
        }
        let dim = r.u32()? as usize;
        let metric = match r.u8()? {
            0 => Metric::L2,
            1 => Metric::Cosine,
            2 => Metric::InnerProduct,
            t => return Err(corrupt(format!("unknown metric tag {t}"))),
        };
        let seed = r.u64()?;
        let centroids = r.f32s()?;
        let nlist = r.len(24)?;
        let mut lists = Vec::with_capacity(nlist);
        for _ in 0..nlist {
            lists.push(List {
                pos: r.u32s()?,
                norm_sq: r.f32s()?,
                scale: r.f32s()?,
                ones: r.f32s()?,
                codes: r.u64s()?,
                fine: r.bytes()?,
                fine_grid: r.f32s()?.chunks_exact(2).map(|g| [g[0], g[1]]).collect(),
            });
        }
        let vectors = r.f32s()?;
        let ids = match r.u8()? {
            0 => IdTable::U64(r.u64s()?),
            1 => {
                let n = r.len(4)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(r.str()?);
                }
                IdTable::Str(v)
            }
            2 => {
                let n = r.len(5)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(match r.u8()? {
                        0 => VectorId::U64(r.u64()?),
                        1 => VectorId::Str(r.str()?),
                        t => return Err(corrupt(format!("unknown id tag {t}"))),
                    });
                }
                IdTable::Mixed(v)
            }
            t => return Err(corrupt(format!("unknown id table tag {t}"))),
        };
        let tombstones = r.u64s()?;
        let trained_rows = r.f64()? as usize;
        let trained_residual = r.f64()?;
        let added_rows = r.f64()? as usize;
        let added_residual = r.f64()?;
        let expected = r.crc.clone().finalize();
        let mut tail = [0u8; 4];
        r.inner
            .read_exact(&mut tail)
            .map_err(|_| corrupt("truncated (no checksum)"))?;
        if u32::from_le_bytes(tail) != expected {
            return Err(corrupt("checksum mismatch"));
        }
        PartitionIndex::from_parts(Parts {
            dim,
            metric,
            seed,
            centroids,
            lists,
            vectors,
            ids,
            tombstones,
            trained_rows,
            trained_residual,
            added_rows,
            added_residual,
        })
    }
}
