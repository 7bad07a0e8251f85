//! Files sent peer to peer: what may be sent, how a transfer travels, and what a received one
//! must be.
//!
//! Each connection has a second data channel for files (negotiated like the chat's, id
//! [`CHANNEL_ID`]), so that a file's megabytes never hold up a chat line or a mute. A transfer
//! is a text frame, `{"file": <its number>, "name", "size"}`, then the file's bytes in binary
//! frames of [`CHUNK`] bytes, in order, until `size` have come. The page sends one file at a
//! time, to everybody or one person, waiting whenever the channel holds more than it should
//! (`bufferedAmount`).
//!
//! What a peer sends is not trusted: a file over [`MAX_BYTES`] is refused before a byte of it
//! is kept, a frame bigger than a chunk can be or bytes beyond the size it announced end the
//! transfer, bytes without a transfer are dropped unread, and its text frames are let in by a
//! [`super::chat_guard::ChatGuard`] of their own. A received file becomes a link that downloads
//! it under its cleaned name; the page never opens it.

use protocol::JsonView;

/// The file channel's label and its negotiated id.
pub const CHANNEL_LABEL: &str = "file";
/// See [`CHANNEL_LABEL`].
pub const CHANNEL_ID: u16 = 1;

/// The largest file sent or taken, in bytes: 16 MiB.
pub const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The bytes of one binary frame sent: 16 KiB, which every browser takes.
pub const CHUNK: u64 = 16 * 1024;

/// The largest binary frame taken: more than any page of ours sends.
pub const MAX_FRAME_BYTES: u64 = 64 * 1024;

/// The longest name kept, in characters.
pub const MAX_NAME_CHARS: usize = 120;

/// The sender waits while the channel holds more than this many bytes not yet sent.
pub const HIGH_WATER: u32 = 1024 * 1024;

/// Why a file was not sent or not taken (`data-refused` on its transfer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileError {
    /// Over [`MAX_BYTES`]: how big it is.
    TooBig(u64),
    /// Nothing in it.
    Empty,
    /// Nobody to send it to.
    Nobody,
    /// The peer broke off or sent more than it announced.
    Broken,
    /// A frame that is not one of ours (nothing is shown of it).
    Malformed,
}

impl FileError {
    /// The transfer's `data-refused`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FileError::TooBig(_) => "too-big",
            FileError::Empty => "empty",
            FileError::Nobody => "nobody",
            FileError::Broken => "broken",
            FileError::Malformed => "malformed",
        }
    }
}

/// A file about to travel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The sender's number for it.
    pub id: u64,
    /// Its name, cleaned ([`clean_name`]).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Whether a file of `size` bytes may be sent.
pub fn check_size(size: u64) -> Result<(), FileError> {
    if size > MAX_BYTES {
        return Err(FileError::TooBig(size));
    }
    if size == 0 {
        return Err(FileError::Empty);
    }
    Ok(())
}

/// A file's name made safe to show and to download under: no path (a sender's
/// `../../.bashrc` is `bashrc`, not hidden), no control characters, no direction marks (which
/// make `photo\u{202e}gpj.exe` look like `photoexe.jpg`) nor invisible ones, trimmed, at most
/// [`MAX_NAME_CHARS`]; `file` when nothing is left.
pub fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let kept: String = last
        .chars()
        .filter(|c| {
            !c.is_control() && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}')
        })
        .take(MAX_NAME_CHARS)
        .collect();
    let kept = kept.trim().trim_start_matches('.').trim();
    if kept.is_empty() {
        "file".to_owned()
    } else {
        kept.to_owned()
    }
}

/// The text frame that starts a transfer.
pub fn encode_header(id: u64, name: &str, size: u64) -> String {
    format!(
        r#"{{"file":{id},"name":{},"size":{size}}}"#,
        protocol::json_string(&clean_name(name))
    )
}

/// A received text frame (as parsed JSON): the start of a transfer (whose size
/// [`Incoming::header`] checks), or [`FileError::Malformed`].
pub fn decode_header(frame: impl JsonView) -> Result<Header, FileError> {
    let field = |key: &str| frame.field(key).ok_or(FileError::Malformed);
    let id = field("file")?.integer().ok_or(FileError::Malformed)?;
    let name = field("name")?.string().ok_or(FileError::Malformed)?;
    let size = field("size")?.integer().ok_or(FileError::Malformed)?;
    Ok(Header {
        id,
        name: clean_name(&name),
        size,
    })
}

/// How far a transfer is, 0 to 100 (`data-progress`).
pub fn progress(done: u64, size: u64) -> u8 {
    if size == 0 {
        return 100;
    }
    (done.min(size) * 100 / size) as u8
}

/// What to do with a frame of the file channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A transfer starts (the one before it, if any, was broken off): show it.
    Start(Header),
    /// Keep the bytes; the transfer is this far.
    Keep(u8),
    /// Keep the bytes: the file is complete.
    Complete,
    /// Drop the frame; the transfer, if there is one, ends so (`None`: there was none).
    Refuse(Option<FileError>),
}

/// The transfer coming in on one connection.
#[derive(Clone, Debug, Default)]
pub struct Incoming {
    /// Its size, and the bytes come so far.
    current: Option<(u64, u64)>,
}

impl Incoming {
    /// Whether a transfer is under way.
    pub fn receiving(&self) -> bool {
        self.current.is_some()
    }

    /// The start of a transfer: taken, or refused for its size.
    pub fn header(&mut self, header: Header) -> Step {
        self.current = None;
        if let Err(err) = check_size(header.size) {
            return Step::Refuse(Some(err));
        }
        self.current = Some((header.size, 0));
        Step::Start(header)
    }

    /// A binary frame of `bytes`.
    pub fn bytes(&mut self, bytes: u64) -> Step {
        let Some((size, got)) = self.current.as_mut() else {
            return Step::Refuse(None); // Bytes of no transfer, or of one refused.
        };
        *got += bytes;
        if bytes > MAX_FRAME_BYTES || *got > *size {
            self.current = None;
            return Step::Refuse(Some(FileError::Broken));
        }
        if *got == *size {
            self.current = None;
            return Step::Complete;
        }
        Step::Keep(progress(*got, *size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(frame: &str) -> Result<Header, FileError> {
        let doc: serde_json::Value = serde_json::from_str(frame).expect("JSON");
        decode_header(&doc)
    }

    #[test]
    fn names_lose_their_paths_and_control_characters() {
        assert_eq!(clean_name("report.pdf"), "report.pdf");
        assert_eq!(clean_name("../../.bashrc"), "bashrc");
        assert_eq!(clean_name("C:\\Users\\a\\photo.jpg"), "photo.jpg");
        assert_eq!(clean_name("photo\u{202e}gpj.exe"), "photogpj.exe");
        assert_eq!(clean_name("a\u{7}b\nc.txt"), "abc.txt");
        assert_eq!(clean_name(" / "), "file");
        assert_eq!(clean_name(""), "file");
        assert_eq!(clean_name(&"é".repeat(500)).chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn a_header_travels_and_a_bad_one_is_refused() {
        let frame = encode_header(7, "dir/報告.pdf", 3_000_000);
        assert_eq!(
            decode(&frame),
            Ok(Header {
                id: 7,
                name: "報告.pdf".into(),
                size: 3_000_000
            })
        );
        for bad in [
            r#"{"file":1,"name":"x"}"#,
            r#"{"file":1,"size":5}"#,
            r#"{"name":"x","size":5}"#,
            r#"{"file":1,"name":"x","size":-5}"#,
            r#"{"file":1,"name":"x","size":1.5}"#,
            r#"{"file":1,"name":7,"size":5}"#,
        ] {
            assert_eq!(decode(bad), Err(FileError::Malformed), "{bad}");
        }
    }

    #[test]
    fn what_may_be_sent() {
        assert_eq!(check_size(1), Ok(()));
        assert_eq!(check_size(MAX_BYTES), Ok(()));
        assert_eq!(
            check_size(MAX_BYTES + 1),
            Err(FileError::TooBig(MAX_BYTES + 1))
        );
        assert_eq!(check_size(0), Err(FileError::Empty));
    }

    #[test]
    fn a_transfer_comes_in_to_its_size_and_no_further() {
        let mut incoming = Incoming::default();
        assert_eq!(incoming.bytes(10), Step::Refuse(None), "no transfer yet");
        let header = Header {
            id: 1,
            name: "a".into(),
            size: 40_000,
        };
        assert_eq!(incoming.header(header.clone()), Step::Start(header.clone()));
        assert_eq!(incoming.bytes(CHUNK), Step::Keep(40));
        assert_eq!(incoming.bytes(CHUNK), Step::Keep(81));
        assert_eq!(incoming.bytes(40_000 - 2 * CHUNK), Step::Complete);
        assert!(!incoming.receiving());
        assert_eq!(incoming.bytes(1), Step::Refuse(None));

        // More than announced, or a frame too big: the transfer ends there.
        incoming.header(header.clone());
        assert_eq!(incoming.bytes(30_000), Step::Keep(75));
        assert_eq!(
            incoming.bytes(20_000),
            Step::Refuse(Some(FileError::Broken))
        );
        assert_eq!(incoming.bytes(1), Step::Refuse(None));
        incoming.header(Header {
            size: MAX_BYTES,
            ..header.clone()
        });
        assert_eq!(
            incoming.bytes(MAX_FRAME_BYTES + 1),
            Step::Refuse(Some(FileError::Broken))
        );

        // A file too big or empty is refused, and leaves nothing to add bytes to; a new one
        // replaces an unfinished one.
        for (size, why) in [
            (MAX_BYTES + 1, FileError::TooBig(MAX_BYTES + 1)),
            (0, FileError::Empty),
        ] {
            let refused = incoming.header(Header {
                size,
                ..header.clone()
            });
            assert_eq!(refused, Step::Refuse(Some(why)));
            assert_eq!(incoming.bytes(1), Step::Refuse(None));
        }
        assert_eq!(incoming.bytes(1), Step::Refuse(None));
        incoming.header(header.clone());
        incoming.bytes(100);
        assert_eq!(incoming.header(header.clone()), Step::Start(header));
        assert_eq!(incoming.bytes(100), Step::Keep(0));
    }

    #[test]
    fn progress_is_whole_percent() {
        assert_eq!(progress(0, 1000), 0);
        assert_eq!(progress(999, 1000), 99);
        assert_eq!(progress(1000, 1000), 100);
        assert_eq!(progress(2000, 1000), 100);
        assert_eq!(progress(0, 0), 100);
        assert_eq!(progress(MAX_BYTES - 1, MAX_BYTES), 99);
    }
}
