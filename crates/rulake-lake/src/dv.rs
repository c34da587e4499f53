//! Delta deletion vectors: the descriptor in an `add` action, Z85, the
//! DV file layout and the 64-bit portable Roaring bitmap inside it.
//!
//! Why our own decoder: the Roaring formats are small, fixed by their
//! specifications (Delta `PROTOCOL.md` "Deletion Vector Format", the
//! RoaringFormatSpec), and RuLake needs only to turn one bitmap into a sorted
//! list of row positions. Every length read from the input is checked
//! against the bytes present and against the descriptor's `cardinality`, so
//! a corrupt vector is an error, never an out-of-bounds read or an
//! allocation sized by the input.

// A fuzz build without `delta` uses the decoders only.
#![cfg_attr(not(feature = "delta"), allow(dead_code))]

/// Magic number before a Delta DV's bitmap in the portable format the
/// protocol specifies (little endian).
const DV_MAGIC: u32 = 1_681_511_377;
/// Magic number of the older "native" RoaringBitmapArray format (written
/// big endian, as the protocol's inline example uses): a big-endian bitmap
/// count, then per bitmap a big-endian length and a 32-bit Roaring bitmap
/// whose key is its index.
const DV_MAGIC_NATIVE: u32 = 1_681_511_376;
/// Largest serialized DV accepted (a DV of this size holds far more rows
/// than any data file RuLake would read).
pub(crate) const MAX_DV_BYTES: i64 = 256 << 20;

/// A deletion vector descriptor as the log gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DvDescriptor {
    pub storage_type: String,
    pub path_or_inline_dv: String,
    pub offset: Option<i64>,
    pub size_in_bytes: i64,
    pub cardinality: i64,
}

impl DvDescriptor {
    /// Delta's `uniqueId`: identifies the vector for snapshot reconstruction.
    pub fn unique_id(&self) -> String {
        match self.offset {
            Some(o) => format!("{}{}@{o}", self.storage_type, self.path_or_inline_dv),
            None => format!("{}{}", self.storage_type, self.path_or_inline_dv),
        }
    }
}

const Z85: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Decode Z85 (ZeroMQ RFC 32): 5 characters → 4 bytes, big endian.
pub(crate) fn z85_decode(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    if b.len() % 5 != 0 {
        return Err(format!(
            "Z85 text has {} characters, not a multiple of 5",
            b.len()
        ));
    }
    let mut digit = [u8::MAX; 256];
    for (i, c) in Z85.iter().enumerate() {
        digit[*c as usize] = i as u8;
    }
    let mut out = Vec::with_capacity(b.len() / 5 * 4);
    for chunk in b.chunks(5) {
        let mut v: u64 = 0;
        for c in chunk {
            let d = digit[*c as usize];
            if d == u8::MAX {
                return Err(format!("{:?} is not a Z85 character", *c as char));
            }
            v = v * 85 + u64::from(d);
        }
        let v = u32::try_from(v).map_err(|_| "Z85 group out of range".to_owned())?;
        out.extend_from_slice(&v.to_be_bytes());
    }
    Ok(out)
}

/// The file name of a `u` vector: the UUID the last 20 characters encode,
/// under the optional random prefix before them.
pub(crate) fn relative_path(path_or_inline_dv: &str) -> Result<String, String> {
    let n = path_or_inline_dv.len();
    if n < 20 || !path_or_inline_dv.is_char_boundary(n - 20) {
        return Err(format!(
            "{path_or_inline_dv:?} is too short for a Z85-encoded UUID"
        ));
    }
    let (prefix, encoded) = path_or_inline_dv.split_at(n - 20);
    let b = z85_decode(encoded)?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    );
    let name = format!("deletion_vector_{uuid}.bin");
    Ok(if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    })
}

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// CRC-32 (IEEE), the checksum of a stored vector.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    const T: [u32; 256] = crc_table();
    let mut c = !0u32;
    for b in data {
        c = T[((c ^ u32::from(*b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// The bitmap of a vector stored in a file: `bytes` start at the
/// descriptor's offset (`dataSize` big endian, the data, its CRC-32).
pub(crate) fn from_file_range(bytes: &[u8], size_in_bytes: usize) -> Result<&[u8], String> {
    let len = bytes
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("deletion vector file ends before the vector's size")?;
    if len != size_in_bytes {
        return Err(format!(
            "the file says the vector has {len} bytes, the log says {size_in_bytes}"
        ));
    }
    let data = bytes
        .get(4..4 + len)
        .ok_or("deletion vector file ends inside the vector")?;
    let sum = bytes
        .get(4 + len..8 + len)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("deletion vector file ends before the vector's checksum")?;
    if crc32(data) != sum {
        return Err("deletion vector checksum mismatch".into());
    }
    Ok(data)
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .at
            .checked_add(n)
            .and_then(|end| self.b.get(self.at..end))
            .ok_or_else(|| format!("bitmap truncated at byte {}", self.at))?;
        self.at += n;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u32_be(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, String> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
}

/// Decode a Delta vector (magic number + 64-bit portable Roaring bitmap)
/// into sorted row positions, at most `limit` of them.
pub(crate) fn decode(data: &[u8], limit: usize) -> Result<Vec<u64>, String> {
    let mut c = Cursor { b: data, at: 0 };
    let mut out = Vec::new();
    if data.get(..4) == Some(&DV_MAGIC_NATIVE.to_be_bytes()[..]) {
        c.take(4)?;
        let n = c.u32_be()?;
        for key in 0..n {
            let len = c.u32_be()? as usize;
            let start = c.at;
            read_32(&mut c, u64::from(key) << 32, limit, &mut out)?;
            if c.at - start != len {
                return Err(format!("bitmap {key} is not {len} bytes long"));
            }
        }
        return ascending(out);
    }
    let magic = c.u32()?;
    if magic != DV_MAGIC {
        return Err(format!(
            "magic number {magic}, expected {DV_MAGIC} (a RoaringBitmapArray)"
        ));
    }
    let buckets = c.u64()?;
    let mut last_key: Option<u32> = None;
    for _ in 0..buckets {
        let key = c.u32()?;
        if last_key.is_some_and(|k| k >= key) {
            return Err("bitmap buckets are not in ascending order".into());
        }
        last_key = Some(key);
        read_32(&mut c, u64::from(key) << 32, limit, &mut out)?;
    }
    ascending(out)
}

/// Positions a valid bitmap holds are strictly ascending (containers and
/// their values are sorted); anything else is a corrupt vector, and the
/// delete path relies on the order, so it is an error here.
fn ascending(rows: Vec<u64>) -> Result<Vec<u64>, String> {
    match rows.windows(2).position(|w| w[0] >= w[1]) {
        Some(i) => Err(format!(
            "row positions out of order ({} then {}): a corrupt bitmap",
            rows[i],
            rows[i + 1]
        )),
        None => Ok(rows),
    }
}

/// One 32-bit portable Roaring bitmap (RoaringFormatSpec).
fn read_32(c: &mut Cursor, high: u64, limit: usize, out: &mut Vec<u64>) -> Result<(), String> {
    const SERIAL_COOKIE_NO_RUNCONTAINER: u32 = 12346;
    const SERIAL_COOKIE: u32 = 12347;
    const NO_OFFSET_THRESHOLD: usize = 4;
    let cookie = c.u32()?;
    let (size, runs) = if cookie & 0xFFFF == SERIAL_COOKIE {
        let size = (cookie >> 16) as usize + 1;
        let flags = c.take(size.div_ceil(8))?.to_vec();
        (size, Some(flags))
    } else if cookie == SERIAL_COOKIE_NO_RUNCONTAINER {
        (c.u32()? as usize, None)
    } else {
        return Err(format!("unknown Roaring cookie {cookie}"));
    };
    if size > 1 << 16 {
        return Err(format!("{size} containers in one 32-bit bitmap"));
    }
    let mut headers = Vec::with_capacity(size);
    for _ in 0..size {
        let key = c.u16()?;
        let card = c.u16()? as usize + 1;
        headers.push((key, card));
    }
    if runs.is_none() || size >= NO_OFFSET_THRESHOLD {
        c.take(4 * size)?; // offsets: the containers follow in order anyway
    }
    for (i, (key, card)) in headers.into_iter().enumerate() {
        if out.len() + card > limit {
            return Err(format!("more than {limit} deleted rows"));
        }
        let base = high | (u64::from(key) << 16);
        let is_run = runs
            .as_ref()
            .is_some_and(|f| f[i / 8] & (1 << (i % 8)) != 0);
        if is_run {
            let n = c.u16()? as usize;
            for _ in 0..n {
                let start = u64::from(c.u16()?);
                let len = u64::from(c.u16()?);
                if start + len > 0xFFFF {
                    return Err("run container past its 16-bit range".into());
                }
                if out.len() + len as usize >= limit {
                    return Err(format!("more than {limit} deleted rows"));
                }
                out.extend((start..=start + len).map(|v| base | v));
            }
        } else if card <= 4096 {
            for _ in 0..card {
                out.push(base | u64::from(c.u16()?));
            }
        } else {
            let words = c.take(8192)?;
            for (w, chunk) in words.chunks_exact(8).enumerate() {
                let mut a = [0u8; 8];
                a.copy_from_slice(chunk);
                let mut bits = u64::from_le_bytes(a);
                while bits != 0 {
                    let t = bits.trailing_zeros() as u64;
                    out.push(base | (w as u64 * 64 + t));
                    bits &= bits - 1;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of the Delta protocol's "Deletion Vector Descriptor
    /// Schema" section (the inline one is in the native format).
    #[test]
    fn protocol_examples() {
        assert_eq!(
            relative_path("ab^-aqEH.-t@S}K{vb[*k^").unwrap(),
            "ab/deletion_vector_d2c639aa-8816-431a-aaf6-d3fe2512ff61.bin"
        );
        let inline = z85_decode("wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L").unwrap();
        assert_eq!(inline.len(), 40);
        assert_eq!(decode(&inline, 100).unwrap(), vec![3, 4, 7, 11, 18, 29]);
        assert!(decode(&inline, 3).is_err());
        assert!(decode(&inline[..30], 100).is_err());
        assert!(z85_decode("abc").is_err());
    }

    /// Every truncation and every single-byte change of real vectors (the
    /// protocol's inline example, the fuzz seeds pyroaring wrote) is an
    /// error or at most `limit` positions, never a panic.
    #[test]
    fn damaged_vectors_are_errors() {
        let inline = z85_decode("wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L").unwrap();
        let runs = include_bytes!("../../../fuzz/seeds/delta_dv/file-runs");
        let dense = include_bytes!("../../../fuzz/seeds/delta_dv/file-dense");
        // The seeds are a mode byte, then size, bitmap and CRC as stored.
        let stored = |b: &[u8]| from_file_range(b, b.len().saturating_sub(8)).map(<[u8]>::to_vec);
        let bitmaps = [
            inline,
            stored(&runs[1..]).unwrap(),
            stored(&dense[1..]).unwrap(),
        ];
        for bitmap in &bitmaps {
            for limit in [0, 5, 100_000] {
                for cut in 0..bitmap.len() {
                    if let Ok(rows) = decode(&bitmap[..cut], limit) {
                        assert!(rows.len() <= limit);
                    }
                }
                for at in (0..bitmap.len()).step_by(3) {
                    for flip in [0x01, 0x80, 0xFF] {
                        let mut b = bitmap.clone();
                        b[at] ^= flip;
                        if let Ok(rows) = decode(&b, limit) {
                            assert!(rows.len() <= limit);
                            assert!(rows.windows(2).all(|w| w[0] < w[1]));
                        }
                    }
                }
            }
        }
        let mut framed = runs[1..].to_vec();
        for at in 0..framed.len() {
            framed[at] ^= 0x40;
            assert!(
                stored(&framed).is_err(),
                "a change at byte {at} passed the CRC"
            );
            framed[at] ^= 0x40;
        }
    }

    #[test]
    fn crc32_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }
}
