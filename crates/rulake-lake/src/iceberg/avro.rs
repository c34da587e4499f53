//! The size an Avro object container file (a manifest list or manifest)
//! inflates to, counted before the `iceberg` crate decodes it.
//!
//! Why: the crate decodes through `apache-avro`, which inflates each block
//! into one buffer with no bound (deflate and zstandard), or allocates the
//! length a snappy block claims. A manifest of a few hundred KiB can so
//! demand gigabytes. Here the container is walked (header, then each
//! block's count, size, data and sync marker, every length checked against
//! the bytes present) and each block is inflated into a sink, stopping as
//! soon as the file's total passes the limit: nothing is allocated by the
//! input's say-so. A file that passes is handed to the crate unchanged.
//!
//! Codecs: `null`, `deflate`, `snappy` (its length header is what the
//! decoder allocates) and `zstandard`, the ones the crate's decoder is
//! built with; any other is refused here as the crate would refuse it.

use std::io::Read;

/// Most bytes one Avro file may inflate to (all its blocks together).
/// Real manifests inflate to a few tens of MiB at most.
pub const MAX_AVRO_INFLATED_BYTES: u64 = 256 << 20;

/// Why a file was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AvroCheck {
    /// It inflates past the limit: the bytes counted when stopping.
    TooLarge(u64),
    /// Not a readable Avro container file.
    Invalid(String),
}

/// The magic bytes an Avro object container file starts with.
const MAGIC: &[u8; 4] = b"Obj\x01";
/// Length of the sync marker after the header and after every block.
const SYNC_LEN: usize = 16;

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AvroCheck> {
        let s = self
            .at
            .checked_add(n)
            .and_then(|end| self.b.get(self.at..end))
            .ok_or_else(|| invalid(format!("truncated at byte {}", self.at)))?;
        self.at += n;
        Ok(s)
    }

    /// An unsigned LEB128 varint (at most 10 bytes).
    fn varint(&mut self) -> Result<u64, AvroCheck> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1)?[0];
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(invalid(format!("varint too long at byte {}", self.at)))
    }

    /// An Avro `long` (zig-zag varint).
    fn long(&mut self) -> Result<i64, AvroCheck> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A length (a non-negative `long`).
    fn len(&mut self) -> Result<usize, AvroCheck> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| invalid(format!("negative length {n}")))
    }
}

fn invalid(reason: impl std::fmt::Display) -> AvroCheck {
    AvroCheck::Invalid(format!("not a readable Avro file: {reason}"))
}

/// The bytes `file` inflates to, or why it is refused: more than `limit`
/// bytes, or not a well-formed container.
pub(super) fn inflated_size(file: &[u8], limit: u64) -> Result<u64, AvroCheck> {
    let mut c = Cursor { b: file, at: 0 };
    if c.take(MAGIC.len()).ok() != Some(&MAGIC[..]) {
        return Err(invalid("no Avro magic number"));
    }
    let codec = header_codec(&mut c)?;
    let sync = c.take(SYNC_LEN)?;
    let mut total = 0u64;
    while c.at < file.len() {
        if c.long()? < 0 {
            return Err(invalid("negative object count"));
        }
        let size = c.len()?;
        let data = c.take(size)?;
        if c.take(SYNC_LEN)? != sync {
            return Err(invalid(format!(
                "sync marker mismatch after the block ending at byte {}",
                c.at - SYNC_LEN
            )));
        }
        let budget = limit.saturating_sub(total);
        total = total.saturating_add(block_size(codec, data, budget)?);
        if total > limit {
            return Err(AvroCheck::TooLarge(total));
        }
    }
    Ok(total)
}

/// The codec the header's metadata map names (`null` when absent), the
/// cursor left on the sync marker.
fn header_codec<'a>(c: &mut Cursor<'a>) -> Result<&'a [u8], AvroCheck> {
    let mut codec: &[u8] = b"null";
    loop {
        let mut n = c.long()?;
        if n == 0 {
            return Ok(codec);
        }
        if n < 0 {
            // A negative count is followed by the block's size in bytes.
            n = n
                .checked_neg()
                .ok_or_else(|| invalid("bad map block count"))?;
            c.long()?;
        }
        for _ in 0..n {
            let key_len = c.len()?;
            let key = c.take(key_len)?;
            let value_len = c.len()?;
            let value = c.take(value_len)?;
            if key == b"avro.codec" {
                codec = value;
            }
        }
    }
}

/// The inflated size of one block's data, counting at most `budget + 1`
/// bytes (anything over `budget` is over the limit).
fn block_size(codec: &[u8], data: &[u8], budget: u64) -> Result<u64, AvroCheck> {
    match codec {
        b"null" => Ok(data.len() as u64),
        b"deflate" => count(flate2::read::DeflateDecoder::new(data), budget, "deflate"),
        b"zstandard" => {
            let decoder = zstd::stream::read::Decoder::with_buffer(data)
                .map_err(|e| invalid(format!("zstandard block: {e}")))?;
            count(decoder, budget, "zstandard")
        }
        b"snappy" => {
            // Snappy data then a CRC-32 of the inflated bytes; the data
            // starts with its inflated length, which the decoder allocates.
            if data.len() < 4 {
                return Err(invalid("snappy block shorter than its checksum"));
            }
            let mut c = Cursor {
                b: &data[..data.len() - 4],
                at: 0,
            };
            c.varint()
        }
        other => Err(invalid(format!(
            "codec {:?} is not supported",
            String::from_utf8_lossy(other)
        ))),
    }
}

/// Bytes `decoder` yields, reading at most `budget + 1` of them.
fn count(decoder: impl Read, budget: u64, codec: &str) -> Result<u64, AvroCheck> {
    std::io::copy(
        &mut decoder.take(budget.saturating_add(1)),
        &mut std::io::sink(),
    )
    .map_err(|e| invalid(format!("{codec} block: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn long(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    /// An Avro container with `codec` and one block per entry of `blocks`
    /// (already compressed).
    fn container(codec: &str, blocks: &[Vec<u8>]) -> Vec<u8> {
        let sync = [7u8; SYNC_LEN];
        let mut out = MAGIC.to_vec();
        long(&mut out, 2);
        for (k, v) in [("avro.schema", "\"bytes\""), ("avro.codec", codec)] {
            long(&mut out, k.len() as i64);
            out.extend_from_slice(k.as_bytes());
            long(&mut out, v.len() as i64);
            out.extend_from_slice(v.as_bytes());
        }
        long(&mut out, 0);
        out.extend_from_slice(&sync);
        for b in blocks {
            long(&mut out, 1);
            long(&mut out, b.len() as i64);
            out.extend_from_slice(b);
            out.extend_from_slice(&sync);
        }
        out
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn counts_every_codec() {
        let data = vec![5u8; 10_000];
        let n = data.len() as u64;
        let null = container("null", &[data.clone(), data.clone()]);
        assert_eq!(inflated_size(&null, 1 << 20), Ok(2 * n));
        let deflated = container("deflate", &[deflate(&data)]);
        assert_eq!(inflated_size(&deflated, 1 << 20), Ok(n));
        let z = zstd::encode_all(&data[..], 3).unwrap();
        assert_eq!(inflated_size(&container("zstandard", &[z]), 1 << 20), Ok(n));
        // Snappy: the length header (10000 = 0x90 0x4e), then anything.
        let snappy = container("snappy", &[vec![0x90, 0x4e, 0, 0, 0, 0, 0]]);
        assert_eq!(inflated_size(&snappy, 1 << 20), Ok(n));
        let headerless = container("snappy", &[vec![0x90, 0x4e, 0]]);
        assert_eq!(inflated_size(&headerless, 1 << 20).ok(), None);
        assert!(inflated_size(&container("bzip2", &[data]), 1 << 20).is_err());
    }

    /// The limit holds at its edge, across blocks and within one block.
    #[test]
    fn limit_at_its_edge() {
        let data = vec![0u8; 4096];
        let two = container("deflate", &[deflate(&data), deflate(&data)]);
        assert_eq!(inflated_size(&two, 8192), Ok(8192));
        assert_eq!(inflated_size(&two, 8191), Err(AvroCheck::TooLarge(8192)));
        assert_eq!(inflated_size(&two, 4095), Err(AvroCheck::TooLarge(4096)));
        let snappy = container("snappy", &[vec![0x90, 0x4e, 0, 0, 0, 0, 0]]);
        assert_eq!(
            inflated_size(&snappy, 9_999),
            Err(AvroCheck::TooLarge(10_000))
        );
    }

    /// 257 MiB of zeros deflated into one block of about 250 KiB:
    /// refused after inflating just past the limit, into no buffer.
    #[test]
    fn deflate_bomb_is_refused() {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..257 {
            e.write_all(&zeros).unwrap();
        }
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let file = container("deflate", &[bomb]);
        assert_eq!(
            inflated_size(&file, MAX_AVRO_INFLATED_BYTES),
            Err(AvroCheck::TooLarge(MAX_AVRO_INFLATED_BYTES + 1))
        );
    }

    /// Every truncation and many single-byte changes of a valid file are
    /// an error or a size within the limit, never a panic.
    #[test]
    fn damaged_files_are_errors() {
        let data: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let file = container("deflate", &[deflate(&data), deflate(&data)]);
        assert_eq!(inflated_size(&file, 1 << 20), Ok(6000));
        for cut in 0..file.len() {
            // A cut between blocks leaves a valid, shorter file.
            if let Ok(n) = inflated_size(&file[..cut], 1 << 20) {
                assert!(n == 0 || n == 3000, "{n} bytes from {cut} of the file");
            }
        }
        for at in 0..file.len() {
            for flip in [0x01, 0x80, 0xFF] {
                let mut f = file.clone();
                f[at] ^= flip;
                if let Ok(n) = inflated_size(&f, 1 << 20) {
                    assert!(n <= 1 << 20);
                }
            }
        }
        assert!(matches!(
            inflated_size(b"PAR1", 10),
            Err(AvroCheck::Invalid(_))
        ));
    }
}
