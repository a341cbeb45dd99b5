//! In-meeting chat: the bounded history one meeting keeps in memory, and who may read what.
//!
//! [`ChatLog`] is owned by a room actor and lives exactly as long as the meeting: it is never
//! written to storage (there is no chat table), so when the meeting ends the history is gone.
//! It is sans-I/O: the time of a message is a parameter. It validates and bounds what it keeps
//! (one message's size, the number of messages and their total bytes) and answers with typed
//! [`ProtocolError`]s; it must not decide who is in the room (the room actor resolves sids
//! and grants before calling it).

use crate::protocol::{ChatMessage, ErrorCode, ProtocolError};

/// Longest chat message, in bytes of UTF-8.
pub const MAX_CHAT_TEXT: usize = 4096;

/// The bounds of one meeting's chat history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatLimits {
    /// Largest message, bytes (at most [`MAX_CHAT_TEXT`]).
    pub max_text: usize,
    /// Messages kept for the meeting.
    pub max_messages: usize,
    /// Bytes of text kept for the meeting.
    pub max_bytes: usize,
}

impl Default for ChatLimits {
    fn default() -> Self {
        Self {
            max_text: MAX_CHAT_TEXT,
            max_messages: 1000,
            max_bytes: 512 * 1024,
        }
    }
}

/// The sender of a message, as the room actor knows it.
#[derive(Debug, Clone, Copy)]
pub struct ChatSender<'a> {
    /// Its sid.
    pub sid: &'a str,
    /// Its identity (private messages are shown again to the same identity after a rejoin).
    pub identity: &'a str,
    /// Its display name.
    pub name: &'a str,
}

/// An addressee of a private message.
#[derive(Debug, Clone, Copy)]
pub struct ChatAddressee<'a> {
    /// Its sid.
    pub sid: &'a str,
    /// Its identity.
    pub identity: &'a str,
}

struct Entry {
    message: ChatMessage,
    /// For private messages: the identities of sender and addressee, who may see it later.
    private_between: Option<(String, String)>,
}

/// One meeting's chat history, oldest first.
pub struct ChatLog {
    limits: ChatLimits,
    entries: Vec<Entry>,
    bytes: usize,
    next_id: u64,
}

impl ChatLog {
    /// An empty history bounded by `limits`.
    pub fn new(limits: ChatLimits) -> Self {
        Self {
            limits,
            entries: Vec::new(),
            bytes: 0,
            next_id: 1,
        }
    }

    /// Messages kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was said yet.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of text kept.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Validates and keeps a message sent at `sent_at` (unix ms); returns it as participants
    /// see it. Refused: empty or blank text or text with control characters other than
    /// newline and tab, or over the size limit ([`ErrorCode::ChatTooLong`]); a full history
    /// ([`ErrorCode::ChatFull`]). Nothing is kept when it is refused.
    pub fn post(
        &mut self,
        from: ChatSender<'_>,
        to: Option<ChatAddressee<'_>>,
        text: &str,
        sent_at: u64,
    ) -> Result<ChatMessage, ProtocolError> {
        let max_text = self.limits.max_text.min(MAX_CHAT_TEXT);
        if text.trim().is_empty() {
            return Err(ProtocolError::new(
                ErrorCode::ChatTooLong,
                "a chat message cannot be empty",
            ));
        }
        if text.len() > max_text {
            return Err(ProtocolError::new(
                ErrorCode::ChatTooLong,
                format!("a chat message is at most {max_text} bytes"),
            ));
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ProtocolError::new(
                ErrorCode::BadRequest,
                "a chat message cannot contain control characters other than newline and tab",
            ));
        }
        if self.entries.len() >= self.limits.max_messages
            || self.bytes.saturating_add(text.len()) > self.limits.max_bytes
        {
            return Err(ProtocolError::new(
                ErrorCode::ChatFull,
                "this meeting's chat history is full",
            ));
        }
        let message = ChatMessage {
            id: format!("CH_{}", self.next_id),
            participant: from.sid.to_owned(),
            identity: from.identity.to_owned(),
            name: from.name.to_owned(),
            to: to.map(|a| a.sid.to_owned()),
            text: text.to_owned(),
            sent_at,
        };
        self.next_id += 1;
        self.bytes += text.len();
        self.entries.push(Entry {
            message: message.clone(),
            private_between: to.map(|a| (from.identity.to_owned(), a.identity.to_owned())),
        });
        Ok(message)
    }

    /// What a participant with `identity` joining now may read: every message to everyone,
    /// and the private messages it sent or received under the same identity.
    pub fn history_for(&self, identity: &str) -> Vec<ChatMessage> {
        self.entries
            .iter()
            .filter(|e| match &e.private_between {
                None => true,
                Some((from, to)) => from == identity || to == identity,
            })
            .map(|e| e.message.clone())
            .collect()
    }

    /// Forgets everything (the meeting ended).
    pub fn clear(&mut self) {
        self.entries = Vec::new();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> ChatSender<'static> {
        ChatSender {
            sid: "PA_a",
            identity: "alice",
            name: "Alice",
        }
    }

    #[test]
    fn private_history_is_only_for_the_two_identities() {
        let mut log = ChatLog::new(ChatLimits::default());
        log.post(alice(), None, "hello all", 1).unwrap();
        let bob = ChatAddressee {
            sid: "PA_b",
            identity: "bob",
        };
        let private = log.post(alice(), Some(bob), "psst bob", 2).unwrap();
        assert_eq!(private.to.as_deref(), Some("PA_b"));
        assert_eq!(log.history_for("carol").len(), 1);
        assert_eq!(log.history_for("bob").len(), 2);
        assert_eq!(log.history_for("alice").len(), 2);
        log.clear();
        assert!(log.is_empty() && log.bytes() == 0);
        assert!(log.history_for("alice").is_empty());
    }

    #[test]
    fn limits_give_typed_errors_and_keep_nothing() {
        let limits = ChatLimits {
            max_text: 10,
            max_messages: 2,
            max_bytes: 15,
        };
        let mut log = ChatLog::new(limits);
        let code = |r: Result<ChatMessage, ProtocolError>| r.unwrap_err().code;
        assert_eq!(
            code(log.post(alice(), None, &"x".repeat(11), 0)),
            ErrorCode::ChatTooLong
        );
        assert_eq!(
            code(log.post(alice(), None, "  \n ", 0)),
            ErrorCode::ChatTooLong
        );
        assert_eq!(
            code(log.post(alice(), None, "a\u{7}b", 0)),
            ErrorCode::BadRequest
        );
        log.post(alice(), None, "0123456789", 0).unwrap();
        assert_eq!(
            code(log.post(alice(), None, "0123456", 0)),
            ErrorCode::ChatFull,
            "bytes"
        );
        log.post(alice(), None, "multi\nline", 0).unwrap_err();
        log.post(alice(), None, "ok\tx", 0).unwrap();
        assert_eq!(
            code(log.post(alice(), None, "y", 0)),
            ErrorCode::ChatFull,
            "count"
        );
        assert_eq!(log.len(), 2);
        assert_eq!(log.bytes(), 14);
    }
}
