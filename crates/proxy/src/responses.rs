//! The queue of responses pgcordon expects from a backend session, one entry per request it
//! sent, in order. Each entry says whether that request's responses go to the client, are
//! swallowed (requests pgcordon injected), or are stood in for by a response pgcordon makes
//! itself (a ParseComplete for a statement the session already has). Aligning responses with
//! requests is what lets pgcordon add, drop and rewrite requests without reordering anything the
//! client sees.
//!
//! Protocol facts used here (PostgreSQL "Message Flow"): Parse answers ParseComplete, Bind
//! BindComplete, Close CloseComplete, Describe ParameterDescription then RowDescription or NoData
//! (statement) or RowDescription or NoData (portal), Execute ends with CommandComplete,
//! EmptyQueryResponse or PortalSuspended, Sync and simple Query end with ReadyForQuery. After an
//! ErrorResponse in the extended protocol, the server skips every request up to the next Sync.
//! NoticeResponse, ParameterStatus and NotificationResponse can arrive at any time.

use std::collections::VecDeque;

/// What kind of request an entry stands for, which decides the response that ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Parse,
    Bind,
    DescribeStatement,
    DescribePortal,
    Execute,
    Close,
    Sync,
    /// A simple Query or a FunctionCall: everything up to ReadyForQuery.
    Query,
    /// The client's CopyDone or CopyFail: no response of its own; it marks where the server
    /// leaves copy-in mode, until which it ignores Sync.
    CopyEnd,
}

impl Request {
    /// The request kind of a client message tag (`None` for messages without a response).
    pub fn of_client_message(tag: u8, describe_kind: Option<u8>) -> Option<Request> {
        match tag {
            b'P' => Some(Request::Parse),
            b'B' => Some(Request::Bind),
            b'D' if describe_kind == Some(b'S') => Some(Request::DescribeStatement),
            b'D' => Some(Request::DescribePortal),
            b'E' => Some(Request::Execute),
            b'C' => Some(Request::Close),
            b'S' => Some(Request::Sync),
            b'Q' | b'F' => Some(Request::Query),
            b'c' | b'f' => Some(Request::CopyEnd),
            _ => None,
        }
    }

    /// Whether `tag` is the last response to this request (errors handled separately).
    fn ends_with(self, tag: u8) -> bool {
        match self {
            Request::Parse => tag == b'1',
            Request::Bind => tag == b'2',
            Request::Close => tag == b'3',
            Request::DescribeStatement | Request::DescribePortal => tag == b'T' || tag == b'n',
            Request::Execute => matches!(tag, b'C' | b'I' | b's'),
            Request::Sync | Request::Query => tag == b'Z',
            Request::CopyEnd => false,
        }
    }
}

/// How the responses of one request are handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// The client's request: its responses go to the client.
    Forward,
    /// pgcordon's own request: its responses are dropped. An error is either passed to the
    /// client (it concerns the client's next request, e.g. re-preparing its statement) or fatal
    /// (the identity injection failed).
    Swallow { on_error: OnError },
    /// No request was sent; when its turn comes, pgcordon answers with this message tag itself.
    Synthesize(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Forward,
    Fatal,
}

/// Something to remember when a request completes or fails (a prepared statement registration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    None,
    /// A Parse of this backend statement name: on failure the session does not have it.
    Prepares(String),
}

#[derive(Debug, Clone)]
struct Entry {
    request: Request,
    disposition: Disposition,
    note: Note,
}

/// What to do with one backend message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Forward,
    Drop,
    /// A swallowed request failed and must not be hidden: end the session.
    Fatal,
}

/// Events for the caller besides the action on the message itself.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Messages pgcordon must emit to the client, before the message the action is about.
    pub synthesized: Vec<u8>,
    /// Backend statement names whose Parse failed or was skipped after an error.
    pub failed_prepares: Vec<String>,
}

/// The expected responses of one backend session.
#[derive(Debug, Default)]
pub struct ResponseQueue {
    entries: VecDeque<Entry>,
    /// The server is in copy-in mode and the client has not ended it yet: a Sync the client
    /// sends now is ignored by the server and gets no ReadyForQuery.
    copy_in: bool,
    /// An error in an extended-protocol batch arrived before the client's Sync was queued
    /// (the client sent Flush, or its batch came in two reads): the server skips every request
    /// until that Sync, so none of them may be expected to answer.
    skipping: bool,
    /// Backend statement names whose Parse the server skipped that way; reported as failed
    /// prepares with the next backend message.
    skipped_prepares: Vec<String>,
}

impl ResponseQueue {
    pub fn push(&mut self, request: Request, disposition: Disposition, note: Note) {
        if self.skipping {
            if request != Request::Sync {
                if let Note::Prepares(name) = note {
                    self.skipped_prepares.push(name);
                }
                return;
            }
            self.skipping = false;
        }
        match request {
            Request::Sync if self.copy_in => return,
            Request::CopyEnd => self.copy_in = false,
            _ => {}
        }
        self.entries.push_back(Entry {
            request,
            disposition,
            note,
        });
    }

    /// Nothing is outstanding: no request awaits its responses and the server is not skipping
    /// to a Sync that has yet to come.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && !self.skipping
    }

    /// CopyInResponse: the server ignores (PostgreSQL's CopyGetData) every Sync it reads
    /// until the client's CopyDone or CopyFail, so the Syncs queued behind the COPY up to that
    /// point will get no ReadyForQuery. If the client has not ended the copy yet, later Syncs
    /// are not queued either (see [`ResponseQueue::push`]).
    fn enter_copy_in(&mut self) {
        let end = self
            .entries
            .iter()
            .position(|e| e.request == Request::CopyEnd);
        let limit = end.unwrap_or(self.entries.len());
        // Index 0 is the COPY itself (an Execute or a Query).
        let mut index = 0;
        self.entries.retain(|e| {
            let ignored = index > 0 && index < limit && e.request == Request::Sync;
            index += 1;
            !ignored
        });
        self.copy_in = end.is_none();
    }

    /// Emits synthesized responses that have reached the head, without waiting for a backend
    /// message (they answer requests that were never sent), and drops copy-end markers there.
    pub fn drain_synthesized(&mut self, effects: &mut Effects) {
        while let Some(entry) = self.entries.front() {
            match (entry.request, &entry.disposition) {
                (Request::CopyEnd, _) => {}
                (_, Disposition::Synthesize(tag)) => effects.synthesized.push(*tag),
                _ => break,
            }
            self.entries.pop_front();
        }
    }

    /// Classifies one backend message by the request it answers.
    pub fn on_message(&mut self, tag: u8, effects: &mut Effects) -> Action {
        effects.failed_prepares.append(&mut self.skipped_prepares);
        self.drain_synthesized(effects);
        if matches!(tag, b'N' | b'S' | b'A') {
            return Action::Forward;
        }
        match tag {
            b'G' => self.enter_copy_in(),
            // An error ends copy-in mode on the server: Syncs count again.
            b'E' => self.copy_in = false,
            _ => {}
        }
        let Some(head) = self.entries.front() else {
            // Nothing outstanding: an unsolicited message (a FATAL before close, for example).
            return Action::Forward;
        };
        let disposition = head.disposition.clone();
        let request = head.request;

        if tag == b'E' && request != Request::Query && request != Request::Sync {
            // The server now skips everything up to the next Sync.
            self.skip_to_sync(effects);
            return match disposition {
                Disposition::Swallow {
                    on_error: OnError::Fatal,
                } => Action::Fatal,
                _ => Action::Forward,
            };
        }
        if tag == b'E' && request == Request::Query {
            if let Disposition::Swallow {
                on_error: OnError::Fatal,
            } = disposition
            {
                return Action::Fatal;
            }
        }
        if request.ends_with(tag) {
            // Synthesized answers that follow are emitted by the next call (or the caller's
            // final drain), after this message has gone out.
            self.entries.pop_front();
        }
        match disposition {
            Disposition::Forward => Action::Forward,
            _ => Action::Drop,
        }
    }

    /// After an error: the server skips the rest of the batch up to and excluding the Sync, so
    /// those requests will get no response; synthesized answers for them must not be sent either.
    fn skip_to_sync(&mut self, effects: &mut Effects) {
        while let Some(entry) = self.entries.front() {
            if entry.request == Request::Sync {
                break;
            }
            if let Note::Prepares(name) = &entry.note {
                effects.failed_prepares.push(name.clone());
            }
            self.entries.pop_front();
        }
        // No Sync queued yet: the server goes on skipping until the client sends one.
        self.skipping = self.entries.is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(q: &mut ResponseQueue, tags: &[u8]) -> (Vec<Action>, Effects) {
        let mut effects = Effects::default();
        let actions = tags
            .iter()
            .map(|t| q.on_message(*t, &mut effects))
            .collect();
        (actions, effects)
    }

    fn push_all(q: &mut ResponseQueue, requests: &[Request]) {
        for r in requests {
            q.push(*r, Disposition::Forward, Note::None);
        }
    }

    /// tokio-postgres and libpq send Sync right after the COPY's Execute; the server ignores it
    /// in copy-in mode and answers only the Sync after CopyDone or CopyFail.
    #[test]
    fn syncs_sent_during_copy_in_expect_no_ready_for_query() {
        use Request::{Bind, CopyEnd, Execute, Sync};
        // The whole copy was sent before the CopyInResponse arrived.
        let mut q = ResponseQueue::default();
        push_all(&mut q, &[Bind, Execute, Sync, CopyEnd, Sync]);
        let (actions, _) = run(&mut q, b"2GCZ");
        assert!(actions.iter().all(|a| *a == Action::Forward));
        assert!(q.is_empty(), "{q:?}");

        // The copy ends after the CopyInResponse; a Sync in between is ignored too.
        let mut q = ResponseQueue::default();
        push_all(&mut q, &[Bind, Execute, Sync]);
        run(&mut q, b"2G");
        push_all(&mut q, &[Sync, CopyEnd, Sync]);
        run(&mut q, b"CZ");
        assert!(q.is_empty(), "{q:?}");

        // An error in the middle (a bad row, or CopyFail): skip to the Sync after the copy.
        let mut q = ResponseQueue::default();
        push_all(&mut q, &[Bind, Execute, Sync, CopyEnd, Sync]);
        run(&mut q, b"2GEZ");
        assert!(q.is_empty(), "{q:?}");

        // A bad row rejected before the client ended the copy: its CopyDone and Sync follow.
        let mut q = ResponseQueue::default();
        push_all(&mut q, &[Bind, Execute, Sync]);
        run(&mut q, b"2GE");
        assert!(!q.is_empty(), "the Sync after the copy is still to come");
        push_all(&mut q, &[CopyEnd, Sync]);
        run(&mut q, b"Z");
        assert!(q.is_empty(), "{q:?}");

        // The next batch after a finished copy is answered normally.
        push_all(&mut q, &[Request::Query]);
        run(&mut q, b"TDCZ");
        assert!(q.is_empty(), "{q:?}");
    }

    /// Parse, Bind, Flush: the Bind fails before the client sends Execute and Sync. The server
    /// skips those (and a Parse in between) and answers only the Sync.
    #[test]
    fn an_error_before_the_sync_arrives_skips_what_comes_until_it() {
        use Request::{Bind, Execute, Parse, Sync};
        let mut q = ResponseQueue::default();
        push_all(&mut q, &[Parse, Bind]);
        let (actions, _) = run(&mut q, b"1E");
        assert_eq!(actions, [Action::Forward, Action::Forward]);
        assert!(!q.is_empty(), "the server still skips to the coming Sync");

        q.push(Parse, Disposition::Forward, Note::Prepares("s1".into()));
        push_all(&mut q, &[Execute, Sync]);
        let (actions, effects) = run(&mut q, b"Z");
        assert_eq!(actions, [Action::Forward]);
        assert_eq!(
            effects.failed_prepares,
            ["s1"],
            "the skipped Parse prepared nothing"
        );
        assert!(q.is_empty(), "{q:?}");

        // The next batch lines up again.
        push_all(&mut q, &[Parse, Bind, Execute, Sync]);
        run(&mut q, b"12CZ");
        assert!(q.is_empty(), "{q:?}");
    }

    #[test]
    fn forwards_a_plain_extended_batch_and_empties() {
        let mut q = ResponseQueue::default();
        for r in [
            Request::Parse,
            Request::Bind,
            Request::Execute,
            Request::Sync,
        ] {
            q.push(r, Disposition::Forward, Note::None);
        }
        let (actions, _) = run(&mut q, b"12DDCZ");
        assert!(actions.iter().all(|a| *a == Action::Forward));
        assert!(q.is_empty());
    }

    #[test]
    fn swallows_injected_requests_and_synthesizes_in_order() {
        let mut q = ResponseQueue::default();
        let swallow = Disposition::Swallow {
            on_error: OnError::Forward,
        };
        q.push(Request::Parse, Disposition::Forward, Note::None); // client's first Parse
        q.push(Request::Parse, Disposition::Synthesize(b'1'), Note::None); // already prepared
        q.push(Request::Parse, swallow.clone(), Note::Prepares("s".into())); // re-prepare
        q.push(Request::Bind, Disposition::Forward, Note::None);
        q.push(Request::Sync, Disposition::Forward, Note::None);

        let mut effects = Effects::default();
        assert_eq!(q.on_message(b'1', &mut effects), Action::Forward);
        assert!(
            effects.synthesized.is_empty(),
            "not before the message it follows"
        );
        // The synthesized ParseComplete is due right after the first one: before the next.
        assert_eq!(q.on_message(b'1', &mut effects), Action::Drop);
        assert_eq!(effects.synthesized, b"1");
        assert_eq!(q.on_message(b'2', &mut effects), Action::Forward);
        assert_eq!(q.on_message(b'Z', &mut effects), Action::Forward);
        assert!(q.is_empty());
    }

    #[test]
    fn an_error_skips_to_sync_and_cancels_later_synthesized_answers() {
        let mut q = ResponseQueue::default();
        q.push(Request::Bind, Disposition::Forward, Note::None);
        q.push(
            Request::Parse,
            Disposition::Forward,
            Note::Prepares("b".into()),
        );
        q.push(Request::Parse, Disposition::Synthesize(b'1'), Note::None);
        q.push(Request::Execute, Disposition::Forward, Note::None);
        q.push(Request::Sync, Disposition::Forward, Note::None);
        let (actions, effects) = run(&mut q, b"EZ");
        assert_eq!(actions, vec![Action::Forward, Action::Forward]);
        assert!(effects.synthesized.is_empty());
        assert_eq!(effects.failed_prepares, vec!["b".to_string()]);
        assert!(q.is_empty());
    }

    #[test]
    fn synthesized_answers_at_the_head_drain_without_a_backend_message() {
        let mut q = ResponseQueue::default();
        q.push(Request::Parse, Disposition::Synthesize(b'1'), Note::None);
        q.push(Request::Close, Disposition::Synthesize(b'3'), Note::None);
        let mut effects = Effects::default();
        q.drain_synthesized(&mut effects);
        assert_eq!(effects.synthesized, b"13");
        assert!(q.is_empty());
    }

    #[test]
    fn a_failed_injection_is_fatal_and_async_messages_pass() {
        let mut q = ResponseQueue::default();
        let fatal = Disposition::Swallow {
            on_error: OnError::Fatal,
        };
        q.push(Request::Parse, fatal.clone(), Note::None);
        q.push(Request::Execute, fatal, Note::None);
        let (actions, _) = run(&mut q, b"1NSE");
        assert_eq!(
            actions,
            vec![
                Action::Drop,
                Action::Forward,
                Action::Forward,
                Action::Fatal
            ]
        );
    }

    #[test]
    fn a_query_forwards_errors_and_ends_at_ready() {
        let mut q = ResponseQueue::default();
        q.push(Request::Query, Disposition::Forward, Note::None);
        let (actions, _) = run(&mut q, b"TDCEZ");
        assert!(actions.iter().all(|a| *a == Action::Forward));
        assert!(q.is_empty());
    }

    #[test]
    fn describe_statement_ends_at_row_description_or_no_data() {
        let mut q = ResponseQueue::default();
        q.push(Request::DescribeStatement, Disposition::Forward, Note::None);
        q.push(Request::DescribeStatement, Disposition::Forward, Note::None);
        let (_, _) = run(&mut q, b"tT");
        assert!(!q.is_empty());
        let (_, _) = run(&mut q, b"tn");
        assert!(q.is_empty());
    }
}
