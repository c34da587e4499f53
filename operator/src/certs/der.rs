//! Just enough DER to read back what the operator stored: a certificate's
//! issuer, subject, public key and expiry, and the common name of a
//! subject. rcgen writes certificates but does not read them without a
//! full X.509 parser; these few fields are all rotation needs.
//!
//! Every read is bounds-checked and returns `None` on anything unexpected
//! (a multi-byte tag, an indefinite or oversized length, a wrong tag): a
//! certificate the operator cannot read is one it issues again.

use k8s_openapi::jiff::Timestamp;

/// The fields of a certificate rotation looks at.
#[derive(Debug)]
pub struct CertInfo<'a> {
    /// The issuer `Name`, as encoded (tag and length included).
    pub issuer: &'a [u8],
    /// The subject `Name`, as encoded.
    pub subject: &'a [u8],
    /// `SubjectPublicKeyInfo`, as encoded.
    pub spki: &'a [u8],
    /// End of the validity period.
    pub not_after: Timestamp,
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
/// 2.5.4.3, commonName.
const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// One element: its tag, its contents, the whole encoding, and what
/// follows it.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
    rest: &'a [u8],
}

fn read(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, after_len) = after_tag.split_first()?;
    let (len, after_len) = if first < 0x80 {
        (usize::from(first), after_len)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || after_len.len() < n {
            return None;
        }
        let len = after_len[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &after_len[n..])
    };
    if after_len.len() < len {
        return None;
    }
    let header = input.len() - after_len.len();
    Some(Tlv {
        tag,
        content: &after_len[..len],
        whole: &input[..header + len],
        rest: &after_len[len..],
    })
}

fn expect(input: &[u8], tag: u8) -> Option<Tlv<'_>> {
    read(input).filter(|t| t.tag == tag)
}

/// Reads the fields rotation needs from a DER certificate.
pub fn cert_info(der: &[u8]) -> Option<CertInfo<'_>> {
    let cert = expect(der, SEQUENCE)?;
    let tbs = expect(cert.content, SEQUENCE)?;
    let mut rest = tbs.content;
    if rest.first() == Some(&VERSION) {
        rest = read(rest)?.rest;
    }
    let serial = expect(rest, INTEGER)?;
    let algorithm = expect(serial.rest, SEQUENCE)?;
    let issuer = expect(algorithm.rest, SEQUENCE)?;
    let validity = expect(issuer.rest, SEQUENCE)?;
    let subject = expect(validity.rest, SEQUENCE)?;
    let spki = expect(subject.rest, SEQUENCE)?;
    let not_before = read(validity.content)?;
    let not_after = time(&read(not_before.rest)?)?;
    Some(CertInfo {
        issuer: issuer.whole,
        subject: subject.whole,
        spki: spki.whole,
        not_after,
    })
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`).
fn time(t: &Tlv<'_>) -> Option<Timestamp> {
    let text = std::str::from_utf8(t.content).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let full = match (t.tag, digits.len()) {
        (UTC_TIME, 12) => {
            let yy: u32 = digits[..2].parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{digits}")
        }
        (GENERALIZED_TIME, 14) => digits.to_string(),
        _ => return None,
    };
    let f = |a: usize, b: usize| &full[a..b];
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        f(0, 4),
        f(4, 6),
        f(6, 8),
        f(8, 10),
        f(10, 12),
        f(12, 14)
    )
    .parse()
    .ok()
}

/// The first common name of an encoded `Name`.
pub fn common_name(name: &[u8]) -> Option<String> {
    let mut rdns = expect(name, SEQUENCE)?.content;
    while !rdns.is_empty() {
        let set = expect(rdns, SET)?;
        let mut attrs = set.content;
        while !attrs.is_empty() {
            let attr = expect(attrs, SEQUENCE)?;
            let oid = expect(attr.content, OID)?;
            let value = read(oid.rest)?;
            if oid.content == COMMON_NAME && matches!(value.tag, UTF8_STRING | PRINTABLE_STRING) {
                return String::from_utf8(value.content.to_vec()).ok();
            }
            attrs = attr.rest;
        }
        rdns = set.rest;
    }
    None
}

fn write(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The encoding of a `Name` holding one UTF-8 common name, as rcgen
/// writes it for a distinguished name with only `CommonName`.
pub fn name_with_common_name(cn: &str) -> Vec<u8> {
    let attr = [write(OID, &COMMON_NAME), write(UTF8_STRING, cn.as_bytes())].concat();
    write(SEQUENCE, &write(SET, &write(SEQUENCE, &attr)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_tags_are_checked() {
        assert!(read(&[]).is_none());
        assert!(read(&[0x30]).is_none(), "no length");
        assert!(
            read(&[0x30, 0x05, 1, 2]).is_none(),
            "shorter than its length"
        );
        assert!(read(&[0x1f, 0x00]).is_none(), "multi-byte tag");
        assert!(read(&[0x30, 0x80]).is_none(), "indefinite length");
        assert!(
            read(&[0x30, 0x85, 0, 0, 0, 0, 1]).is_none(),
            "5-byte length"
        );
        let t = read(&[0x04, 0x81, 0x01, 0xaa, 0xbb]).unwrap();
        assert_eq!((t.tag, t.content, t.rest), (0x04, &[0xaa][..], &[0xbb][..]));
        assert!(cert_info(b"not a certificate").is_none());
    }

    #[test]
    fn times_of_both_forms() {
        let utc = |s: &str| {
            time(&Tlv {
                tag: UTC_TIME,
                content: s.as_bytes(),
                whole: &[],
                rest: &[],
            })
        };
        assert_eq!(
            utc("491231235959Z").unwrap().to_string(),
            "2049-12-31T23:59:59Z"
        );
        assert_eq!(
            utc("500101000000Z").unwrap().to_string(),
            "1950-01-01T00:00:00Z"
        );
        assert!(utc("5001010000Z").is_none());
        assert!(utc("49123123595aZ").is_none());
        let generalized = time(&Tlv {
            tag: GENERALIZED_TIME,
            content: b"20991231000000Z",
            whole: &[],
            rest: &[],
        });
        assert_eq!(generalized.unwrap().to_string(), "2099-12-31T00:00:00Z");
    }

    #[test]
    fn common_names_round_trip_even_when_long() {
        for cn in ["rulake CA", &"x".repeat(300)] {
            assert_eq!(common_name(&name_with_common_name(cn)).as_deref(), Some(cn));
        }
    }
}
