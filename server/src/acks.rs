//! Signals between relays, numbered so that a lost one is found and its sender told.
//!
//! Redis delivers what is published at most once. When a relay's subscription to its channel
//! breaks without Redis noticing (a network cut: the socket still looks open to Redis), Redis
//! goes on counting that relay as a listener, so a sender's relay believes its signals were
//! heard; they went into the dead socket, and the subscription the relay makes anew starts
//! after them. The chaos run lost a few signals so in one `cut-redis` run of ten.
//!
//! So every signal one relay publishes to another carries a number, counted in Redis per pair
//! of relays by the script that publishes it (numbers are contiguous: only what is published
//! is counted). The receiving relay follows the numbers of each sender ([`Heard`]): a number
//! skipped means signals lost, and each time it subscribes again it has Redis publish, on its
//! own channel, how far every sender's count has gone ([`SEQS_MARK`]); whatever it has not
//! heard of by that mark is lost. It reports the gaps to each sender's relay through a Redis
//! list, and the sender's relay, which keeps for a while who sent which number ([`Sent`]),
//! tells those senders their signal did not arrive (`backplane-unavailable`: send it again).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use protocol::PeerId;
use tokio::time::Instant;

/// What the mark of how far each sender's count has gone starts with (`!seqs A=n B=m`).
pub const SEQS_MARK: &str = "!seqs ";

/// How long a sender's relay remembers who sent a numbered signal.
pub const KEEP: Duration = Duration::from_secs(60);

/// How many numbered signals a sender's relay remembers per receiving relay.
pub const KEEP_MAX: usize = 65_536;

/// Numbers a receiving relay did not hear from one sender's relay: `first..=last`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The sending relay.
    pub sender: String,
    /// The first number lost.
    pub first: u64,
    /// The last number lost.
    pub last: u64,
}

impl Gap {
    /// The report the sender's relay reads: `RECEIVER FIRST LAST`.
    pub fn report(&self, receiver: &str) -> String {
        format!("{receiver} {} {}", self.first, self.last)
    }

    /// Reads a report: the receiving relay and the numbers lost.
    pub fn read(report: &str) -> Option<(&str, u64, u64)> {
        let mut parts = report.split(' ');
        let receiver = parts.next().filter(|r| !r.is_empty())?;
        let first = parts.next()?.parse().ok()?;
        let last = parts.next()?.parse().ok()?;
        (first <= last).then_some((receiver, first, last))
    }
}

/// The numbers a receiving relay heard, by sending relay, and the gaps found.
#[derive(Debug, Default)]
pub struct Heard {
    last: HashMap<String, u64>,
    gaps: Vec<Gap>,
}

impl Heard {
    /// Signal number `seq` from `sender` arrived. A sender not heard from yet counts from 0:
    /// its count for this relay began with this relay's name, at the first signal.
    pub fn saw(&mut self, sender: &str, seq: u64) {
        self.up_to(sender, seq, true);
    }

    /// The mark says `sender` has published `count` signals to this relay: those not heard of
    /// by now are lost.
    pub fn counted(&mut self, sender: &str, count: u64) {
        self.up_to(sender, count, false);
    }

    fn up_to(&mut self, sender: &str, seq: u64, arrived: bool) {
        let last = self.last.entry(sender.to_owned()).or_insert(0);
        let lost_to = if arrived { seq.saturating_sub(1) } else { seq };
        if seq <= *last {
            // Behind what was heard: the count began again (Redis lost its data). Nothing
            // can be told lost from it.
            *last = seq;
            return;
        }
        if lost_to > *last {
            self.gaps.push(Gap {
                sender: sender.to_owned(),
                first: *last + 1,
                last: lost_to,
            });
        }
        *last = seq;
    }

    /// The gaps found and not yet reported.
    pub fn take_gaps(&mut self) -> Vec<Gap> {
        std::mem::take(&mut self.gaps)
    }

    /// Gaps that could not be reported, to try again.
    pub fn put_back(&mut self, gaps: Vec<Gap>) {
        self.gaps.extend(gaps);
    }
}

/// Who sent each numbered signal a sending relay published, by receiving relay, for [`KEEP`].
#[derive(Debug, Default)]
pub struct Sent {
    by_receiver: HashMap<String, VecDeque<(u64, PeerId, Instant)>>,
}

impl Sent {
    /// Signal number `seq` to `receiver` came from `from`, at `now`.
    pub fn record(&mut self, receiver: &str, seq: u64, from: PeerId, now: Instant) {
        let log = self.by_receiver.entry(receiver.to_owned()).or_default();
        if log.len() >= KEEP_MAX {
            log.pop_front();
        }
        log.push_back((seq, from, now));
    }

    /// The senders of numbers `first..=last` to `receiver`, which were lost; they are
    /// forgotten.
    pub fn lost(&mut self, receiver: &str, first: u64, last: u64) -> Vec<PeerId> {
        let Some(log) = self.by_receiver.get_mut(receiver) else {
            return Vec::new();
        };
        let mut senders = Vec::new();
        log.retain(|&(seq, from, _)| {
            let lost = (first..=last).contains(&seq);
            if lost {
                senders.push(from);
            }
            !lost
        });
        senders
    }

    /// Forgets what was sent before `now - KEEP`.
    pub fn prune(&mut self, now: Instant) {
        self.by_receiver.retain(|_, log| {
            while log
                .front()
                .is_some_and(|&(_, _, at)| now.duration_since(at) > KEEP)
            {
                log.pop_front();
            }
            !log.is_empty()
        });
    }
}

/// Reads a mark's counts: `A=n B=m` (after [`SEQS_MARK`]).
pub fn read_mark(mark: &str) -> impl Iterator<Item = (&str, u64)> {
    mark.split(' ').filter_map(|part| {
        let (sender, count) = part.split_once('=')?;
        Some((sender, count.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_number_is_a_gap() {
        let mut heard = Heard::default();
        heard.saw("a", 1);
        heard.saw("a", 2);
        heard.saw("a", 5);
        heard.saw("b", 2);
        assert_eq!(
            heard.take_gaps(),
            vec![
                Gap {
                    sender: "a".into(),
                    first: 3,
                    last: 4
                },
                Gap {
                    sender: "b".into(),
                    first: 1,
                    last: 1
                },
            ]
        );
        assert!(heard.take_gaps().is_empty());
    }

    #[test]
    fn the_mark_finds_what_was_lost_at_the_end() {
        let mut heard = Heard::default();
        heard.saw("a", 1);
        // The subscription broke; 2 and 3 went into it; 4 came on the new one.
        heard.saw("a", 4);
        heard.counted("a", 5);
        heard.counted("b", 0);
        let gaps = heard.take_gaps();
        assert_eq!(gaps.len(), 2, "{gaps:?}");
        assert_eq!((gaps[0].first, gaps[0].last), (2, 3));
        assert_eq!((gaps[1].first, gaps[1].last), (5, 5));
        // A count heard in full leaves nothing to report.
        heard.counted("a", 5);
        assert!(heard.take_gaps().is_empty());
    }

    #[test]
    fn a_count_that_began_again_is_no_gap() {
        let mut heard = Heard::default();
        heard.saw("a", 40);
        heard.take_gaps();
        heard.saw("a", 1);
        heard.counted("a", 1);
        heard.saw("a", 2);
        assert!(heard.take_gaps().is_empty());
    }

    #[test]
    fn the_senders_of_lost_numbers_are_found_once() {
        let mut sent = Sent::default();
        let now = Instant::now();
        for (seq, from) in [(1, 10), (2, 11), (3, 10), (4, 12)] {
            sent.record("r", seq, PeerId(from), now);
        }
        assert_eq!(sent.lost("r", 2, 3), vec![PeerId(11), PeerId(10)]);
        assert!(sent.lost("r", 2, 3).is_empty());
        assert!(sent.lost("other", 1, 4).is_empty());
        sent.prune(now + KEEP + Duration::from_secs(1));
        assert!(sent.lost("r", 1, 4).is_empty());
    }

    #[test]
    fn reports_and_marks_read_back() {
        let gap = Gap {
            sender: "s".into(),
            first: 3,
            last: 9,
        };
        assert_eq!(Gap::read(&gap.report("me")), Some(("me", 3, 9)));
        assert_eq!(Gap::read("me 9 3"), None);
        assert_eq!(Gap::read(" 1 2"), None);
        let counts: Vec<_> = read_mark("a=3 b=0 junk c=x").collect();
        assert_eq!(counts, vec![("a", 3), ("b", 0)]);
    }
}
