//! ACK/NACK bookkeeping of one resource type on one stream, shared by SotW
//! and Delta.
//!
//! A request whose `response_nonce` is the nonce of the latest response of
//! its type acknowledges that response: an ACK, or a NACK when it carries
//! `error_detail`. A request with an older nonce is stale: it acknowledges
//! nothing, but its subscription changes still apply; with `error_detail`
//! it is still counted and shown as a NACK (Delta does not repeat what an
//! earlier response carried, so the client may keep refusing it).

use std::time::SystemTime;

/// The longest NACK message kept, in bytes: the admin API and CSDS copy it
/// (CSDS into every resource of the type), and a client may send up to the
/// request size limit.
pub(crate) const MAX_NACK_MESSAGE: usize = 1024;

/// `message` cut to `MAX_NACK_MESSAGE` bytes on a character boundary, with
/// a mark when cut.
fn kept(mut message: String) -> String {
    if message.len() > MAX_NACK_MESSAGE {
        let mut end = MAX_NACK_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str(" [cut]");
    }
    message
}

/// A rejected response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    /// Version the client rejected.
    pub rejected_version: String,
    /// Nonce of the rejected response.
    pub nonce: String,
    /// The client's error message.
    pub message: String,
    /// The client's `google.rpc.Code`.
    pub code: i32,
    /// When it arrived.
    pub at: SystemTime,
}

/// How a request relates to the responses already sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// No nonce: an initial request or a subscription change.
    Fresh,
    /// Accepts the latest response.
    Ack,
    /// Rejects the latest response.
    Nack(Nack),
    /// Answers the latest response again (already ACKed or NACKed), e.g. a
    /// subscription change right after an ACK.
    Repeat,
    /// Answers an older response.
    Stale,
    /// Rejects an older response (a later one went out before the answer
    /// came): shown and counted, nothing else changes.
    LateNack(Nack),
}

/// ACK state of one resource type on one stream.
#[derive(Debug, Clone, Default)]
pub struct Acks {
    /// Version of the latest response.
    pub sent_version: String,
    /// Nonce of the latest response.
    pub last_nonce: String,
    /// Whether the latest response awaits an ACK or NACK.
    pub awaiting: bool,
    /// Last version the client accepted.
    pub acked_version: String,
    /// ACKs so far.
    pub acks: u64,
    /// NACKs so far.
    pub nacks: u64,
    /// The latest NACK.
    pub last_nack: Option<Nack>,
}

impl Acks {
    /// Classifies a request with `nonce` and optional `error` (code, message).
    pub(crate) fn on_request(&mut self, nonce: &str, error: Option<(i32, String)>) -> Reply {
        if nonce.is_empty() {
            return Reply::Fresh;
        }
        if nonce != self.last_nonce {
            // Nothing sent yet: no earlier response to reject.
            let (Some((code, message)), false) = (error, self.sent_version.is_empty()) else {
                return Reply::Stale;
            };
            let rejected = format!("before {}", self.sent_version);
            return Reply::LateNack(self.record_nack(rejected, nonce, code, message));
        }
        if !self.awaiting {
            return Reply::Repeat;
        }
        self.awaiting = false;
        match error {
            None => {
                self.acks += 1;
                self.acked_version = self.sent_version.clone();
                Reply::Ack
            }
            Some((code, message)) => {
                let rejected = self.sent_version.clone();
                Reply::Nack(self.record_nack(rejected, nonce, code, message))
            }
        }
    }

    /// Counts a NACK and keeps it as the latest.
    fn record_nack(
        &mut self,
        rejected_version: String,
        nonce: &str,
        code: i32,
        message: String,
    ) -> Nack {
        self.nacks += 1;
        let nack = Nack {
            rejected_version,
            nonce: nonce.to_string(),
            message: kept(message),
            code,
            at: SystemTime::now(),
        };
        self.last_nack = Some(nack.clone());
        nack
    }

    /// Records a response sent with `version` and `nonce`.
    pub(crate) fn on_response(&mut self, version: &str, nonce: &str) {
        self.sent_version = version.to_string();
        self.last_nonce = nonce.to_string();
        self.awaiting = true;
    }

    /// Nonce awaiting an answer, if any.
    pub fn pending_nonce(&self) -> Option<&str> {
        self.awaiting.then_some(self.last_nonce.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nack_of_an_earlier_response_is_counted_and_changes_nothing_else() {
        let mut acks = Acks::default();
        acks.on_response("v1", "1");
        acks.on_response("v2", "2");
        let reply = acks.on_request("1", Some((3, "bad weight".into())));
        let Reply::LateNack(nack) = reply else {
            panic!("not a late NACK: {reply:?}");
        };
        assert_eq!(
            (nack.nonce.as_str(), nack.message.as_str()),
            ("1", "bad weight")
        );
        assert_eq!(nack.rejected_version, "before v2");
        assert_eq!(acks.nacks, 1);
        assert!(acks.last_nack.is_some());
        // The latest response still awaits its answer.
        assert_eq!(acks.pending_nonce(), Some("2"));
        assert_eq!(acks.on_request("2", None), Reply::Ack);
        assert_eq!(acks.acked_version, "v2");
    }

    #[test]
    fn a_huge_nack_message_is_cut() {
        let mut acks = Acks::default();
        acks.on_response("v1", "1");
        let huge = "é".repeat(1_000_000);
        let Reply::Nack(nack) = acks.on_request("1", Some((3, huge))) else {
            panic!("not a NACK");
        };
        assert!(nack.message.len() <= MAX_NACK_MESSAGE + " [cut]".len());
        assert!(nack.message.ends_with(" [cut]"));
        acks.on_response("v2", "2");
        acks.on_response("v3", "3");
        let Reply::LateNack(late) = acks.on_request("2", Some((3, "x".repeat(5000)))) else {
            panic!("not a late NACK");
        };
        assert!(late.message.len() <= MAX_NACK_MESSAGE + " [cut]".len());
        // A NACK naming a nonce on a type nothing was sent for is noise.
        let mut fresh = Acks::default();
        assert_eq!(fresh.on_request("7", Some((3, "x".into()))), Reply::Stale);
        assert_eq!(fresh.nacks, 0);
        let short = "bad weight".to_string();
        assert_eq!(kept(short.clone()), short);
    }

    #[test]
    fn ack_nack_stale_and_repeat() {
        let mut acks = Acks::default();
        assert_eq!(acks.on_request("", None), Reply::Fresh);
        acks.on_response("v1", "1");
        assert_eq!(acks.on_request("0", None), Reply::Stale);
        assert_eq!(acks.on_request("1", None), Reply::Ack);
        assert_eq!(acks.acked_version, "v1");
        assert_eq!(acks.on_request("1", None), Reply::Repeat);

        acks.on_response("v2", "2");
        let reply = acks.on_request("2", Some((3, "bad weight".into())));
        assert!(
            matches!(reply, Reply::Nack(ref n) if n.rejected_version == "v2" && n.message == "bad weight")
        );
        // A NACKed client stays on its last ACKed version.
        assert_eq!(acks.acked_version, "v1");
        assert_eq!((acks.acks, acks.nacks), (1, 1));
        assert_eq!(acks.pending_nonce(), None);
    }
}
