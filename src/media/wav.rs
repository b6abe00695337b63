//! WAV prompts: RIFF/WAVE files to μ-law 8 kHz.
//!
//! Owns: parsing the RIFF container (chunks in any order, odd-size padding,
//! streaming writers' oversized `data` lengths), accepting PCM 16-bit mono at
//! 8000 or 16000 Hz (16 kHz is low-pass filtered and decimated to 8 kHz) and
//! G.711 μ-law/A-law mono 8 kHz, and explaining any other format by field.
//!
//! Must not: play anything or touch sockets; reading the file is the only I/O.

use super::g711;
use bytes::Bytes;
use std::path::Path;

/// Why a WAV file cannot be used as a prompt.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("cannot read WAV file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a WAV file: {0}")]
    NotWav(&'static str),
    #[error("WAV file has no `{0}` chunk")]
    MissingChunk(&'static str),
    #[error("WAV file is truncated: {0}")]
    Truncated(&'static str),
    #[error("unsupported WAV {field}: {found} (herald needs {expected})")]
    Unsupported {
        field: &'static str,
        found: u32,
        expected: &'static str,
    },
}

const FORMAT_PCM: u16 = 1;
const FORMAT_ALAW: u16 = 6;
const FORMAT_ULAW: u16 = 7;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

#[derive(Debug, Clone, Copy)]
struct Format {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
}

/// Reads a WAV file into μ-law 8 kHz bytes.
pub fn read_wav(path: &Path) -> Result<Bytes, WavError> {
    let data = std::fs::read(path).map_err(|source| WavError::Io {
        path: path.display().to_string(),
        source,
    })?;
    decode_wav(&data)
}

/// Converts the bytes of a WAV file into μ-law 8 kHz.
pub fn decode_wav(file: &[u8]) -> Result<Bytes, WavError> {
    if file.len() < 12 {
        return Err(WavError::Truncated("shorter than the 12-byte RIFF header"));
    }
    if &file[0..4] != b"RIFF" {
        return Err(WavError::NotWav("does not start with `RIFF`"));
    }
    if &file[8..12] != b"WAVE" {
        return Err(WavError::NotWav("RIFF form type is not `WAVE`"));
    }
    let mut format: Option<Format> = None;
    let mut data: Option<&[u8]> = None;
    let mut rest = &file[12..];
    while rest.len() >= 8 {
        let id = &rest[0..4];
        let size = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let body_all = &rest[8..];
        // Streaming writers leave the size at 0 or 0xFFFFFFFF: take what is there.
        let body = &body_all[..size.min(body_all.len())];
        match id {
            b"fmt " => format = Some(parse_format(body)?),
            b"data" => data = Some(body),
            _ => {}
        }
        let advance = size.saturating_add(size & 1);
        if advance >= body_all.len() {
            break;
        }
        rest = &body_all[advance..];
    }
    let format = format.ok_or(WavError::MissingChunk("fmt "))?;
    let data = data.ok_or(WavError::MissingChunk("data"))?;
    convert(format, data)
}

fn parse_format(b: &[u8]) -> Result<Format, WavError> {
    if b.len() < 16 {
        return Err(WavError::Truncated("`fmt ` chunk shorter than 16 bytes"));
    }
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let mut tag = u16_at(0);
    if tag == FORMAT_EXTENSIBLE {
        // WAVE_FORMAT_EXTENSIBLE: the real format is the first two bytes of
        // the sub-format GUID, at offset 24.
        if b.len() < 26 {
            return Err(WavError::Truncated(
                "extensible `fmt ` chunk without sub-format",
            ));
        }
        tag = u16_at(24);
    }
    Ok(Format {
        tag,
        channels: u16_at(2),
        rate: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        bits: u16_at(14),
    })
}

fn unsupported(field: &'static str, found: u32, expected: &'static str) -> WavError {
    WavError::Unsupported {
        field,
        found,
        expected,
    }
}

fn convert(f: Format, data: &[u8]) -> Result<Bytes, WavError> {
    if f.channels != 1 {
        return Err(unsupported("channels", f.channels.into(), "1 (mono)"));
    }
    match f.tag {
        FORMAT_PCM => {
            if f.bits != 16 {
                return Err(unsupported("bits per sample", f.bits.into(), "16 for PCM"));
            }
            let samples: Vec<i16> = data
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            let samples = match f.rate {
                8000 => samples,
                16000 => downsample_16k_to_8k(&samples),
                r => return Err(unsupported("sample rate", r, "8000 or 16000 Hz for PCM")),
            };
            let mut out = Vec::with_capacity(samples.len());
            g711::encode_ulaw(&samples, &mut out);
            Ok(Bytes::from(out))
        }
        FORMAT_ULAW | FORMAT_ALAW => {
            if f.rate != 8000 {
                return Err(unsupported("sample rate", f.rate, "8000 Hz for G.711"));
            }
            if f.bits != 8 {
                return Err(unsupported("bits per sample", f.bits.into(), "8 for G.711"));
            }
            if f.tag == FORMAT_ULAW {
                Ok(Bytes::copy_from_slice(data))
            } else {
                let mut out = data.to_vec();
                g711::alaw_frame_to_ulaw(&mut out);
                Ok(Bytes::from(out))
            }
        }
        t => Err(unsupported(
            "audio format",
            t.into(),
            "1 (PCM), 6 (A-law) or 7 (μ-law)",
        )),
    }
}

/// Taps of the decimation low-pass filter (odd, so it has a centre tap).
const TAPS: usize = 31;

/// A windowed-sinc low-pass at 3.6 kHz for 16 kHz input (Hamming window),
/// normalised to unity gain at DC.
fn lowpass_taps() -> [f32; TAPS] {
    let fc = 3600.0f64 / 16000.0;
    let m = (TAPS - 1) as f64;
    let mut h = [0f32; TAPS];
    let mut sum = 0.0f64;
    let mut raw = [0f64; TAPS];
    for (n, r) in raw.iter_mut().enumerate() {
        let x = n as f64 - m / 2.0;
        let sinc = if x == 0.0 {
            2.0 * fc
        } else {
            (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
        };
        let window = 0.54 - 0.46 * (2.0 * std::f64::consts::PI * n as f64 / m).cos();
        *r = sinc * window;
        sum += *r;
    }
    for (o, r) in h.iter_mut().zip(raw) {
        *o = (r / sum) as f32;
    }
    h
}

/// Halves the sample rate: low-pass below the new Nyquist frequency, then
/// keep every other sample.
pub fn downsample_16k_to_8k(samples: &[i16]) -> Vec<i16> {
    let h = lowpass_taps();
    let half = (TAPS / 2) as isize;
    let len = samples.len() as isize;
    (0..samples.len() / 2)
        .map(|k| {
            let centre = 2 * k as isize;
            let mut acc = 0f32;
            for (j, tap) in h.iter().enumerate() {
                let i = centre + j as isize - half;
                if (0..len).contains(&i) {
                    acc += tap * f32::from(samples[i as usize]);
                }
            }
            acc.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVE");
        v.extend_from_slice(b"fmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        let block = channels * bits / 8;
        v.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        v.extend_from_slice(&block.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    fn pcm(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    fn sine(freq: f64, rate: f64, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin()) as i16)
            .collect()
    }

    fn rms(s: &[i16]) -> f64 {
        (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
    }

    #[test]
    fn pcm_8k_is_encoded_sample_for_sample() {
        let samples = [0i16, 1000, -1000, 32000];
        let out = decode_wav(&wav(1, 1, 8000, 16, &pcm(&samples))).expect("valid");
        let want: Vec<u8> = samples.iter().map(|&s| g711::linear_to_ulaw(s)).collect();
        assert_eq!(&out[..], &want[..]);
        assert_eq!(out[0], g711::ULAW_SILENCE);
    }

    #[test]
    fn pcm_16k_is_halved_and_keeps_the_voice_band() {
        let tone = sine(1000.0, 16000.0, 1600, 10000.0);
        let out = decode_wav(&wav(1, 1, 16000, 16, &pcm(&tone))).expect("valid");
        assert_eq!(out.len(), 800);
        let mut lin = Vec::new();
        g711::decode_ulaw(&out, &mut lin);
        let (got, want) = (rms(&lin[50..750]), rms(&tone));
        assert!(
            (got / want - 1.0).abs() < 0.05,
            "1 kHz passes: {got} vs {want}"
        );
    }

    #[test]
    fn tones_above_4khz_are_filtered_not_aliased() {
        let tone = sine(6000.0, 16000.0, 1600, 10000.0);
        let down = downsample_16k_to_8k(&tone);
        assert!(rms(&down[50..750]) < 0.05 * rms(&tone), "6 kHz is stopped");
    }

    #[test]
    fn g711_wavs_are_taken_as_they_are() {
        let data = [0x00u8, 0x7F, 0x80, 0xFF];
        assert_eq!(
            &decode_wav(&wav(7, 1, 8000, 8, &data)).expect("ulaw")[..],
            &data
        );
        let alaw = decode_wav(&wav(6, 1, 8000, 8, &[0xD5])).expect("alaw");
        assert_eq!(&alaw[..], &[g711::alaw_to_ulaw(0xD5)]);
    }

    #[test]
    fn other_formats_are_refused_naming_the_field() {
        let err = |b: Vec<u8>| decode_wav(&b).expect_err("refused").to_string();
        assert_eq!(
            err(wav(1, 2, 8000, 16, &[0; 8])),
            "unsupported WAV channels: 2 (herald needs 1 (mono))"
        );
        assert!(err(wav(1, 1, 44100, 16, &[0; 8])).contains("sample rate: 44100"));
        assert!(err(wav(1, 1, 8000, 8, &[0; 8])).contains("bits per sample: 8"));
        assert!(err(wav(3, 1, 8000, 32, &[0; 8])).contains("audio format: 3"));
        assert!(err(wav(7, 1, 16000, 8, &[0; 8])).contains("8000 Hz for G.711"));
    }

    #[test]
    fn broken_containers_are_refused_clearly() {
        let good = wav(1, 1, 8000, 16, &[0; 8]);
        assert!(matches!(decode_wav(b"RIFF"), Err(WavError::Truncated(_))));
        let mut not_riff = good.clone();
        not_riff[0] = b'X';
        assert!(matches!(decode_wav(&not_riff), Err(WavError::NotWav(_))));
        let mut not_wave = good.clone();
        not_wave[8..12].copy_from_slice(b"AVI ");
        assert!(matches!(decode_wav(&not_wave), Err(WavError::NotWav(_))));
        // Only the header and the fmt chunk.
        assert!(matches!(
            decode_wav(&good[..36]),
            Err(WavError::MissingChunk("data"))
        ));
        let mut no_fmt = good[..12].to_vec();
        no_fmt.extend_from_slice(&good[36..]);
        assert!(matches!(
            decode_wav(&no_fmt),
            Err(WavError::MissingChunk("fmt "))
        ));
        let mut short_fmt = good[..16].to_vec();
        short_fmt.extend_from_slice(&4u32.to_le_bytes());
        short_fmt.extend_from_slice(&[1, 0, 1, 0]);
        assert!(matches!(
            decode_wav(&short_fmt),
            Err(WavError::Truncated(_))
        ));
    }

    #[test]
    fn extra_chunks_odd_sizes_and_streaming_lengths_are_handled() {
        let mut v = wav(1, 1, 8000, 16, &pcm(&[1000, 1000]));
        // Insert an odd-sized LIST chunk (with its pad byte) before `fmt `.
        let mut list = b"LIST".to_vec();
        list.extend_from_slice(&3u32.to_le_bytes());
        list.extend_from_slice(&[1, 2, 3, 0]);
        v.splice(12..12, list);
        let out = decode_wav(&v).expect("valid");
        assert_eq!(out.len(), 2);
        // A data length beyond the end of the file (streaming writer).
        let n = v.len();
        v[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_wav(&v).expect("valid").len(), 2);
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678u32;
        for len in 0..300 {
            let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
            for _ in 0..len {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                v.push((seed >> 24) as u8);
            }
            let _ = decode_wav(&v);
        }
    }

    #[test]
    fn missing_files_name_the_path() {
        let e = read_wav(Path::new("/nonexistent/prompt.wav")).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/prompt.wav"), "{e}");
    }
}
