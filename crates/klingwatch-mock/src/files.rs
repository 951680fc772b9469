//! Result files served by the emulator itself (`/__mock/files/<task_id>/<name>`): small valid
//! PNG images (a colour derived from the task id and index) and a tiny MP4 stub.

use crc32::crc32;

/// An 8x8 RGB PNG whose colour is derived from `seed`.
pub(crate) fn png(seed: &str) -> Vec<u8> {
    let h = fnv1a(seed.as_bytes());
    let (r, g, b) = ((h >> 16) as u8, (h >> 8) as u8, h as u8);
    const W: u32 = 8;
    const H: u32 = 8;
    // Raw scanlines: filter byte 0 then RGB triples.
    let mut raw = Vec::with_capacity((H * (1 + 3 * W)) as usize);
    for y in 0..H {
        raw.push(0);
        for x in 0..W {
            // A small diagonal stripe so the image is not a flat colour.
            if (x + y) % 4 == 0 {
                raw.extend_from_slice(&[255 - r, 255 - g, 255 - b]);
            } else {
                raw.extend_from_slice(&[r, g, b]);
            }
        }
    }
    let mut out = Vec::with_capacity(raw.len() + 80);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&W.to_be_bytes());
    ihdr.extend_from_slice(&H.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, no filter, no interlace
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A minimal MP4 (`ftyp` box plus an empty `mdat`).
pub(crate) fn mp4() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&24u32.to_be_bytes());
    out.extend_from_slice(b"ftypisom");
    out.extend_from_slice(&0x200u32.to_be_bytes());
    out.extend_from_slice(b"isomiso2");
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(b"mdat");
    out
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// zlib stream with a single stored (uncompressed) deflate block (data < 64 KiB).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let len = data.len() as u16;
    let mut out = vec![0x78, 0x01, 0x01];
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + x as u32) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn fnv1a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

mod crc32 {
    /// CRC-32 (IEEE) as used by PNG.
    pub(crate) fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_is_well_formed() {
        let p = png("123/0");
        assert_eq!(&p[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&p[12..16], b"IHDR");
        assert_eq!(crc32::crc32(b"IEND"), 0xae42_6082);
        assert_ne!(png("a"), png("b"));
    }
}
