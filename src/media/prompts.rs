//! Prompts: the audio script agents play, as μ-law 8 kHz.
//!
//! Owns where a prompt may come from: a prompt shipped with herald (named by
//! its file name, e.g. `goodbye.wav`), or a WAV file under the configured
//! `agents.prompt_dir`. A name is first normalised without touching the
//! filesystem ([`resolve_in`]: `..`, and absolute paths outside the
//! directory, are refused); then the file's real path, symlinks resolved,
//! must still lie under the directory. Whatever keeps a name from being
//! used — outside the directory, a symlink out of it, missing, unreadable,
//! not a regular file — the error is the same [`PromptError::NotAvailable`],
//! so an answer never tells whether some file exists.
//!
//! Must not: open anything outside the prompt directory, or be called on an
//! async worker thread (it reads files; callers use a blocking task).

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;

use super::wav::{decode_wav, WavError};

/// Prompts shipped with herald, by file name.
const SHIPPED: &[(&str, &[u8])] = &[
    (
        "appointment-ask.wav",
        include_bytes!("../../scenarios/audio/appointment-ask.wav"),
    ),
    (
        "appointment-confirmed.wav",
        include_bytes!("../../scenarios/audio/appointment-confirmed.wav"),
    ),
    (
        "appointment-cancelled.wav",
        include_bytes!("../../scenarios/audio/appointment-cancelled.wav"),
    ),
    (
        "appointment-callback.wav",
        include_bytes!("../../scenarios/audio/appointment-callback.wav"),
    ),
    (
        "emergency-alert.wav",
        include_bytes!("../../scenarios/audio/emergency-alert.wav"),
    ),
    (
        "emergency-thanks.wav",
        include_bytes!("../../scenarios/audio/emergency-thanks.wav"),
    ),
    (
        "goodbye.wav",
        include_bytes!("../../scenarios/audio/goodbye.wav"),
    ),
];

/// The largest prompt file read: 32 MiB (over 8 minutes of 16 kHz PCM).
pub const MAX_PROMPT_BYTES: u64 = 32 * 1024 * 1024;

/// Why a prompt cannot be played.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// Not a shipped prompt, and not a readable file under the prompt
    /// directory (the same answer whatever the reason).
    #[error("must name a shipped prompt or a WAV file under agents.prompt_dir")]
    NotAvailable,
    /// A file under the prompt directory that is too large.
    #[error("is larger than {MAX_PROMPT_BYTES} bytes")]
    TooLarge,
    /// A file under the prompt directory that herald cannot play.
    #[error(transparent)]
    Wav(#[from] WavError),
}

/// Where prompts are looked up: the shipped ones, then the prompt directory.
#[derive(Debug, Clone, Default)]
pub struct Prompts {
    dir: Option<PromptDir>,
}

#[derive(Debug, Clone)]
struct PromptDir {
    /// As configured, made absolute: absolute names are matched against it.
    given: PathBuf,
    /// With symlinks resolved: every file read must lie under it.
    real: PathBuf,
}

impl Prompts {
    /// Only the prompts shipped with herald.
    pub fn shipped_only() -> Prompts {
        Prompts::default()
    }

    /// As configured (`agents.prompt_dir`): empty, the shipped prompts
    /// only; else those and the files under the directory, which must exist.
    pub fn configured(dir: &str) -> std::io::Result<Prompts> {
        if dir.is_empty() {
            Ok(Prompts::shipped_only())
        } else {
            Prompts::with_dir(Path::new(dir))
        }
    }

    /// The shipped prompts and the files under `dir`, which must exist.
    pub fn with_dir(dir: &Path) -> std::io::Result<Prompts> {
        let given = std::path::absolute(dir)?;
        let real = std::fs::canonicalize(dir)?;
        if !real.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        }
        Ok(Prompts {
            dir: Some(PromptDir { given, real }),
        })
    }

    /// A prompt's μ-law audio: a shipped prompt by name, else a file under
    /// the prompt directory. Reads the file: call from a blocking task.
    pub fn load(&self, name: &str) -> Result<Bytes, PromptError> {
        if let Some((_, wav)) = SHIPPED.iter().find(|(n, _)| *n == name) {
            return Ok(decode_wav(wav)?);
        }
        let dir = self.dir.as_ref().ok_or(PromptError::NotAvailable)?;
        let path = resolve_in(&dir.given, name)
            .or_else(|| resolve_in(&dir.real, name))
            .ok_or(PromptError::NotAvailable)?;
        let real = std::fs::canonicalize(&path).map_err(|_| PromptError::NotAvailable)?;
        if !real.starts_with(&dir.real) {
            return Err(PromptError::NotAvailable);
        }
        let meta = std::fs::metadata(&real).map_err(|_| PromptError::NotAvailable)?;
        if !meta.is_file() {
            return Err(PromptError::NotAvailable);
        }
        if meta.len() > MAX_PROMPT_BYTES {
            return Err(PromptError::TooLarge);
        }
        let bytes = std::fs::read(&real).map_err(|_| PromptError::NotAvailable)?;
        Ok(decode_wav(&bytes)?)
    }
}

/// The names of the shipped prompts.
pub fn shipped_prompts() -> impl Iterator<Item = &'static str> {
    SHIPPED.iter().map(|(n, _)| *n)
}

/// Where `name` lies under `dir`, by the text alone: a relative name is
/// joined to `dir`, an absolute one must start with `dir`; `.` parts are
/// dropped; `..`, an empty name and a NUL byte give `None`. Symlinks are
/// the caller's to check.
pub fn resolve_in(dir: &Path, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('\0') {
        return None;
    }
    let p = Path::new(name);
    let rel = if p.is_absolute() {
        p.strip_prefix(dir).ok()?
    } else {
        p
    };
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    if out.as_os_str().is_empty() {
        return None;
    }
    Some(dir.join(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_under_the_directory_by_their_text_alone() {
        let d = Path::new("/srv/prompts");
        let cases: &[(&str, Option<&str>)] = &[
            ("hello.wav", Some("/srv/prompts/hello.wav")),
            ("./en/hello.wav", Some("/srv/prompts/en/hello.wav")),
            ("en//hello.wav", Some("/srv/prompts/en/hello.wav")),
            (
                "/srv/prompts/en/hello.wav",
                Some("/srv/prompts/en/hello.wav"),
            ),
            ("/srv/prompts", None),
            ("/srv/prompts2/x.wav", None),
            ("/etc/hostname", None),
            ("../../etc/passwd", None),
            ("en/../../etc/passwd", None),
            ("en/../hello.wav", None),
            ("/srv/prompts/../secret.wav", None),
            ("", None),
            (".", None),
            ("a\0b.wav", None),
        ];
        for (name, want) in cases {
            assert_eq!(
                resolve_in(d, name).as_deref(),
                want.map(Path::new),
                "{name:?}"
            );
        }
    }

    #[test]
    fn shipped_prompts_load_without_a_directory() {
        let p = Prompts::shipped_only();
        for name in shipped_prompts() {
            assert!(!p.load(name).unwrap().is_empty(), "{name}");
        }
        assert!(matches!(
            p.load("/etc/hostname"),
            Err(PromptError::NotAvailable)
        ));
    }

    #[test]
    fn files_outside_the_directory_missing_or_linked_out_get_one_answer() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("prompts");
        std::fs::create_dir(&dir).unwrap();
        let wav = SHIPPED[0].1;
        std::fs::write(dir.join("mine.wav"), wav).unwrap();
        std::fs::write(root.path().join("outside.wav"), wav).unwrap();
        std::fs::write(dir.join("junk.wav"), b"not a wav").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside.wav"), dir.join("out.wav")).unwrap();
        std::os::unix::fs::symlink(dir.join("mine.wav"), dir.join("in.wav")).unwrap();
        let p = Prompts::with_dir(&dir).unwrap();

        assert!(!p.load("mine.wav").unwrap().is_empty());
        assert!(
            !p.load("in.wav").unwrap().is_empty(),
            "a link inside is fine"
        );
        let abs = dir.join("mine.wav");
        assert!(!p.load(abs.to_str().unwrap()).unwrap().is_empty());
        let outside = root.path().join("outside.wav");
        for name in [
            "out.wav",
            "missing.wav",
            "../outside.wav",
            outside.to_str().unwrap(),
            "/etc/hostname",
            "/nonexistent.wav",
            ".",
        ] {
            assert!(
                matches!(p.load(name), Err(PromptError::NotAvailable)),
                "{name}"
            );
        }
        assert!(matches!(p.load("junk.wav"), Err(PromptError::Wav(_))));
    }
}
