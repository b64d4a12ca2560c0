//! TensorBoard's event-file framing (TFRecord) and the few protobuf messages it holds, written
//! by hand: a scalar event is a dozen bytes of protobuf, which does not warrant a protobuf
//! code generator and its build time.
//!
//! A record is `length (u64 LE) · masked CRC-32C of the length · data · masked CRC-32C of the
//! data`; the data is a `tensorflow.Event`: `wall_time` (1, double), `step` (2, int64),
//! `file_version` (3, string) or `summary` (5) holding `value`s (1) of `tag` (1, string) and
//! `simple_value` (2, float).

/// CRC-32C (Castagnoli), as TFRecord checksums use it.
pub fn crc32c(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// The masking TFRecord applies to its checksums.
fn masked(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends one TFRecord holding `data` to `out`.
pub fn frame(data: &[u8], out: &mut Vec<u8>) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked(crc32c(&len)).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked(crc32c(data)).to_le_bytes());
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// The event that opens every file: its format version.
pub fn version_event(wall_time: f64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(1 << 3 | 1, &mut out);
    out.extend_from_slice(&wall_time.to_le_bytes());
    bytes_field(3, b"brain.Event:2", &mut out);
    out
}

/// An event with one scalar `tag` = `value` at `step`.
pub fn scalar_event(wall_time: f64, step: i64, tag: &str, value: f32) -> Vec<u8> {
    let mut summary_value = Vec::new();
    bytes_field(1, tag.as_bytes(), &mut summary_value);
    varint(2 << 3 | 5, &mut summary_value);
    summary_value.extend_from_slice(&value.to_le_bytes());
    let mut summary = Vec::new();
    bytes_field(1, &summary_value, &mut summary);
    let mut out = Vec::new();
    varint(1 << 3 | 1, &mut out);
    out.extend_from_slice(&wall_time.to_le_bytes());
    varint(2 << 3, &mut out);
    varint(step as u64, &mut out);
    bytes_field(5, &summary, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_has_its_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn records_and_events_have_the_documented_bytes() {
        let mut out = Vec::new();
        frame(b"abc", &mut out);
        assert_eq!(out.len(), 8 + 4 + 3 + 4);
        assert_eq!(&out[..8], &3u64.to_le_bytes());
        assert_eq!(&out[12..15], b"abc");
        assert_eq!(u32::from_le_bytes(out[15..19].try_into().unwrap()), masked(crc32c(b"abc")));
        // wall_time 0, step 300 (varint ac 02), summary { value { tag "a", simple_value 0.5 } }.
        let e = scalar_event(0.0, 300, "a", 0.5);
        let mut expected = vec![
            0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0xac, 0x02, 0x2a, 0x0a, 0x0a, 0x08, 0x0a, 0x01, b'a', 0x15,
        ];
        expected.extend_from_slice(&0.5f32.to_le_bytes());
        assert_eq!(e, expected);
    }
}
