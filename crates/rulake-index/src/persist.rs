//! The on-disk form of a partition, so a restarted shard loads what it
//! built instead of reading the lake again.
//!
//! Layout (little-endian): magic `RLKIVF01`, format version, dimension,
//! metric, seed, the quantizer, every list, the vectors, the id table, the
//! tombstones, the drift counters and the calibration (version 3), then a CRC-32 of everything before
//! it. The rotation is not stored: it is a pure function of (dimension,
//! seed). A file that fails any check is rejected as [`IndexError::Corrupt`]
//! and the caller rebuilds from the lake.

use crate::error::{IndexError, Result};
use crate::ivf::{IdTable, List, PartitionIndex, Parts};
use rulake_types::{Metric, VectorId};
use std::io::{Read, Write};

const MAGIC: &[u8; 8] = b"RLKIVF01";
/// 2: lists carry the 8-bit refinement codes. 3: the calibration follows
/// the drift counters (a version 2 file loads uncalibrated, and the engine
/// calibrates it).
const VERSION: u32 = 3;
const CHUNK: usize = 16 * 1024;

/// A fixed-width number as the file stores it: little-endian.
trait Le: Copy {
    const SIZE: usize;
    fn put(self, buf: &mut Vec<u8>);
    fn get(b: &[u8]) -> Self;
}

macro_rules! le {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, buf: &mut Vec<u8>) {
                buf.extend_from_slice(&self.to_le_bytes());
            }
            fn get(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("one number's bytes"))
            }
        }
    )*};
}
le!(u32, u64, f32);

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
    /// A length, then the numbers, written in chunks of [`CHUNK`].
    fn seq<T: Le>(&mut self, v: &[T]) -> Result<()> {
        self.u64(v.len() as u64)?;
        let mut buf = Vec::with_capacity(CHUNK * T::SIZE);
        for c in v.chunks(CHUNK) {
            buf.clear();
            c.iter().for_each(|&x| x.put(&mut buf));
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

// The partition's own tables, built from the primitives above.
impl<W: Write> CrcWriter<W> {
    /// One inverted list, table by table.
    fn list(&mut self, l: &List) -> Result<()> {
        self.seq(&l.pos)?;
        self.seq(&l.norm_sq)?;
        self.seq(&l.scale)?;
        self.seq(&l.ones)?;
        self.seq(&l.codes)?;
        self.bytes(&l.fine)?;
        self.seq(l.fine_grid.as_flattened())
    }

    /// A tag for the table's kind (0 integers, 1 strings, 2 mixed), then
    /// its ids; a mixed table tags each id (0 integer, 1 string).
    fn ids(&mut self, ids: &IdTable) -> Result<()> {
        match ids {
            IdTable::U64(v) => {
                self.u8(0)?;
                self.seq(v)?;
            }
            IdTable::Str(v) => {
                self.u8(1)?;
                self.u64(v.len() as u64)?;
                for s in v {
                    self.str(s)?;
                }
            }
            IdTable::Mixed(v) => {
                self.u8(2)?;
                self.u64(v.len() as u64)?;
                for id in v {
                    match id {
                        VectorId::U64(x) => {
                            self.u8(0)?;
                            self.u64(*x)?;
                        }
                        VectorId::Str(s) => {
                            self.u8(1)?;
                            self.str(s)?;
                        }
                    }
                }
            }
        }
        Ok(())
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
    /// What [`CrcWriter::seq`] wrote, read in chunks of [`CHUNK`].
    fn seq<T: Le>(&mut self) -> Result<Vec<T>> {
        let n = self.len(T::SIZE as u64)?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let m = (n - out.len()).min(CHUNK);
            let b = self.take(m * T::SIZE)?;
            out.extend(b.chunks_exact(T::SIZE).map(T::get));
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

// The partition's own tables, built from the primitives above.
impl<R: Read> CrcReader<R> {
    /// What [`CrcWriter::list`] wrote.
    fn list(&mut self) -> Result<List> {
        Ok(List {
            pos: self.seq()?,
            norm_sq: self.seq()?,
            scale: self.seq()?,
            ones: self.seq()?,
            codes: self.seq()?,
            fine: self.bytes()?,
            fine_grid: self
                .seq::<f32>()?
                .chunks_exact(2)
                .map(|g| [g[0], g[1]])
                .collect(),
        })
    }

    /// What [`CrcWriter::ids`] wrote.
    fn ids(&mut self) -> Result<IdTable> {
        Ok(match self.u8()? {
            0 => IdTable::U64(self.seq()?),
            1 => {
                let n = self.len(4)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.str()?);
                }
                IdTable::Str(v)
            }
            2 => {
                let n = self.len(5)?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(match self.u8()? {
                        0 => VectorId::U64(self.u64()?),
                        1 => VectorId::Str(self.str()?),
                        t => return Err(corrupt(format!("unknown id tag {t}"))),
                    });
                }
                IdTable::Mixed(v)
            }
            t => return Err(corrupt(format!("unknown id table tag {t}"))),
        })
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
        w.seq(centroids)?;
        w.u64(lists.len() as u64)?;
        for l in lists {
            w.list(l)?;
        }
        w.seq(self.vectors())?;
        w.ids(self.ids())?;
        w.seq(tombstones)?;
        for d in drift {
            w.f64(d)?;
        }
        // Calibration: a flag, then target, nprobe, rerank, recall, samples.
        match self.tuning() {
            None => w.u8(0)?,
            Some(t) => {
                w.u8(1)?;
                w.f64(t.target as f64)?;
                w.u32(t.nprobe as u32)?;
                w.u32(t.rerank as u32)?;
                w.f64(t.recall as f64)?;
                w.u32(t.samples as u32)?;
            }
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
        if version != VERSION && version != 2 {
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
        let centroids = r.seq()?;
        let nlist = r.len(24)?;
        let mut lists = Vec::with_capacity(nlist);
        for _ in 0..nlist {
            lists.push(r.list()?);
        }
        let vectors = r.seq()?;
        let ids = r.ids()?;
        let tombstones = r.seq()?;
        let trained_rows = r.f64()? as usize;
        let trained_residual = r.f64()?;
        let added_rows = r.f64()? as usize;
        let added_residual = r.f64()?;
        let tuning = match if version >= 3 { r.u8()? } else { 0 } {
            0 => None,
            1 => Some(crate::ivf::Tuning {
                target: r.f64()? as f32,
                nprobe: r.u32()? as usize,
                rerank: r.u32()? as usize,
                recall: r.f64()? as f32,
                samples: r.u32()? as usize,
            }),
            t => return Err(corrupt(format!("unknown calibration tag {t}"))),
        };
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
            tuning,
        })
    }
}
