//! ITU-T G.711 μ-law and A-law companding.
//!
//! Owns: sample encode/decode (decode is table-driven, encode computes the
//! segment with a leading-zero count), frame helpers, and μ-law ↔ A-law
//! transcoding of a frame.
//!
//! Must not: do I/O or allocate beyond the output buffers callers pass in.
//!
//! The arithmetic follows the reference implementation that accompanies the
//! recommendation (the classic `g711.c`), so values agree bit for bit with
//! other G.711 implementations (SIPp, Asterisk, sox).

/// μ-law byte for digital silence (linear 0).
pub const ULAW_SILENCE: u8 = 0xFF;
/// A-law byte for digital silence (the A-law code nearest linear 0).
pub const ALAW_SILENCE: u8 = 0xD5;

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 8159;

const fn ulaw_to_linear_calc(u: u8) -> i16 {
    let u = !u;
    let mut t = (((u & 0x0F) as i32) << 3) + ULAW_BIAS;
    t <<= (u & 0x70) >> 4;
    let v = if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    };
    v as i16
}

const fn alaw_to_linear_calc(a: u8) -> i16 {
    let a = a ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = (a & 0x70) >> 4;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    let v = if a & 0x80 != 0 { t } else { -t };
    v as i16
}

/// Position of the highest set bit of `v` (0 for 0 and 1).
const fn highest_bit(v: i32) -> u32 {
    31 - ((v | 1) as u32).leading_zeros()
}

/// Encodes one 16-bit linear sample as μ-law.
#[inline]
pub const fn linear_to_ulaw(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 2;
    let mask: u8 = if pcm < 0 {
        pcm = -pcm;
        0x7F
    } else {
        0xFF
    };
    if pcm > ULAW_CLIP {
        pcm = ULAW_CLIP;
    }
    pcm += ULAW_BIAS >> 2;
    // Segment 0 holds values up to 0x3F (highest bit 5).
    let seg = highest_bit(pcm).saturating_sub(5);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let uval = ((seg << 4) as i32 | ((pcm >> (seg + 1)) & 0x0F)) as u8;
    uval ^ mask
}

/// Encodes one 16-bit linear sample as A-law.
#[inline]
pub const fn linear_to_alaw(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 3;
    let mask: u8 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    // Segment 0 holds values up to 0x1F (highest bit 4).
    let seg = highest_bit(pcm).saturating_sub(4);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let mut aval = (seg << 4) as i32;
    if seg < 2 {
        aval |= (pcm >> 1) & 0x0F;
    } else {
        aval |= (pcm >> seg) & 0x0F;
    }
    (aval as u8) ^ mask
}

const fn build_ulaw_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_to_linear_calc(i as u8);
        i += 1;
    }
    t
}

const fn build_alaw_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_to_linear_calc(i as u8);
        i += 1;
    }
    t
}

const fn build_ulaw_to_alaw() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = linear_to_alaw(ulaw_to_linear_calc(i as u8));
        i += 1;
    }
    t
}

const fn build_alaw_to_ulaw() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = linear_to_ulaw(alaw_to_linear_calc(i as u8));
        i += 1;
    }
    t
}

static ULAW_TO_LINEAR: [i16; 256] = build_ulaw_table();
static ALAW_TO_LINEAR: [i16; 256] = build_alaw_table();
static ULAW_TO_ALAW: [u8; 256] = build_ulaw_to_alaw();
static ALAW_TO_ULAW: [u8; 256] = build_alaw_to_ulaw();

/// Decodes one μ-law byte to a 16-bit linear sample.
#[inline]
pub fn ulaw_to_linear(u: u8) -> i16 {
    ULAW_TO_LINEAR[u as usize]
}

/// Decodes one A-law byte to a 16-bit linear sample.
#[inline]
pub fn alaw_to_linear(a: u8) -> i16 {
    ALAW_TO_LINEAR[a as usize]
}

/// Transcodes one μ-law byte to A-law.
#[inline]
pub fn ulaw_to_alaw(u: u8) -> u8 {
    ULAW_TO_ALAW[u as usize]
}

/// Transcodes one A-law byte to μ-law.
#[inline]
pub fn alaw_to_ulaw(a: u8) -> u8 {
    ALAW_TO_ULAW[a as usize]
}

/// Encodes linear samples as μ-law into `out` (extended).
pub fn encode_ulaw(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| linear_to_ulaw(s)));
}

/// Encodes linear samples as A-law into `out` (extended).
pub fn encode_alaw(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|&s| linear_to_alaw(s)));
}

/// Decodes μ-law bytes into linear samples in `out` (extended).
pub fn decode_ulaw(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| ulaw_to_linear(b)));
}

/// Decodes A-law bytes into linear samples in `out` (extended).
pub fn decode_alaw(bytes: &[u8], out: &mut Vec<i16>) {
    out.extend(bytes.iter().map(|&b| alaw_to_linear(b)));
}

/// Transcodes a μ-law frame to A-law in place.
pub fn ulaw_frame_to_alaw(frame: &mut [u8]) {
    for b in frame {
        *b = ulaw_to_alaw(*b);
    }
}

/// Transcodes an A-law frame to μ-law in place.
pub fn alaw_frame_to_ulaw(frame: &mut [u8]) {
    for b in frame {
        *b = alaw_to_ulaw(*b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_bytes_are_the_standard_ones() {
        assert_eq!(linear_to_ulaw(0), ULAW_SILENCE);
        assert_eq!(linear_to_alaw(0), ALAW_SILENCE);
        assert_eq!(ulaw_to_linear(ULAW_SILENCE), 0);
        assert_eq!(alaw_to_linear(ALAW_SILENCE), 8);
        assert_eq!(ulaw_to_alaw(ULAW_SILENCE), ALAW_SILENCE);
        // A-law has no exact zero: its silence code is +8, μ-law 0xFE.
        assert_eq!(alaw_to_ulaw(ALAW_SILENCE), 0xFE);
    }

    #[test]
    fn known_values_match_the_reference_tables() {
        // μ-law extremes and a few interior codes.
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        assert_eq!(ulaw_to_linear(0xF0), 120);
        assert_eq!(ulaw_to_linear(0xEF), 132);
        // A-law extremes and a few interior codes.
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xD4), 24);
        // Encoder saturation.
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
        assert_eq!(linear_to_ulaw(1000), 0xCE);
        assert_eq!(linear_to_alaw(1000), 0xFA);
    }

    #[test]
    fn decoding_then_encoding_returns_every_code() {
        for b in 0..=255u8 {
            let lin = ulaw_to_linear(b);
            // 0x7F and 0xFF both decode to 0; 0 encodes to 0xFF.
            if b != 0x7F {
                assert_eq!(linear_to_ulaw(lin), b, "μ-law code {b:#04x}");
            }
            assert_eq!(linear_to_alaw(alaw_to_linear(b)), b, "A-law code {b:#04x}");
        }
    }

    #[test]
    fn round_trip_stays_within_the_quantisation_step() {
        for x in i16::MIN..=i16::MAX {
            let xi = x as i32;
            let u = ulaw_to_linear(linear_to_ulaw(x)) as i32;
            let a = alaw_to_linear(linear_to_alaw(x)) as i32;
            let bound = xi.abs() / 16 + 16;
            if xi.abs() <= 32124 {
                assert!((u - xi).abs() <= bound, "μ-law {x} -> {u}");
            }
            if xi.abs() <= 32256 {
                assert!((a - xi).abs() <= bound, "A-law {x} -> {a}");
            }
            // Sign is preserved away from zero.
            if xi.abs() > 64 {
                assert_eq!(u.signum(), xi.signum());
                assert_eq!(a.signum(), xi.signum());
            }
        }
    }

    #[test]
    fn transcoding_preserves_the_signal_closely() {
        for b in 0..=255u8 {
            let lin = ulaw_to_linear(b) as i32;
            let via_alaw = alaw_to_linear(ulaw_to_alaw(b)) as i32;
            assert!((via_alaw - lin).abs() <= lin.abs() / 16 + 16, "{b:#04x}");
            let lin_a = alaw_to_linear(b) as i32;
            let via_ulaw = ulaw_to_linear(alaw_to_ulaw(b)) as i32;
            assert!(
                (via_ulaw - lin_a).abs() <= lin_a.abs() / 16 + 16,
                "{b:#04x}"
            );
        }
        let mut frame = [0xFFu8, 0x80, 0x00, 0xF0];
        ulaw_frame_to_alaw(&mut frame);
        assert_eq!(frame[0], ALAW_SILENCE);
        alaw_frame_to_ulaw(&mut frame);
        assert_eq!(frame[0], 0xFE);
        assert_eq!(frame[1], 0x80);
        assert_eq!(frame[2], 0x00);
    }

    #[test]
    fn frame_helpers_encode_and_decode_slices() {
        let samples = [0i16, 1000, -1000, 32000];
        let mut u = Vec::new();
        encode_ulaw(&samples, &mut u);
        let mut a = Vec::new();
        encode_alaw(&samples, &mut a);
        assert_eq!(u.len(), 4);
        assert_eq!(a.len(), 4);
        let mut back = Vec::new();
        decode_ulaw(&u, &mut back);
        decode_alaw(&a, &mut back);
        assert_eq!(back.len(), 8);
        assert_eq!(back[0], 0);
        assert!((back[1] - 1000).abs() < 64);
    }
}
