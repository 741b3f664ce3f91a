//! The delivery outbox's contract.

use super::OutboxFixture;
use crate::{Appended, OutboxBound, OutboxLimits};

const ROOMY: OutboxLimits = OutboxLimits {
    max_entries: 1_000,
    max_bytes: 16 * 1024 * 1024,
};

async fn payloads(f: &impl OutboxFixture) -> Vec<Vec<u8>> {
    f.outbox()
        .pending(100)
        .await
        .expect("pending")
        .into_iter()
        .map(|e| e.payload)
        .collect()
}

cases! {
    /// One `#[tokio::test]` per outbox contract case, on fixtures built by `$fixture` (an async
    /// expression evaluated afresh for each case).
    macro outbox_conformance_tests for outbox;

    /// Entries come back oldest first, byte for byte, until removed; removing twice is fine.
    pub async fn entries_wait_in_order_until_removed(f: &impl OutboxFixture) {
        let outbox = f.outbox();
        assert_eq!(outbox.usage().await.expect("usage").entries, 0);
        for payload in [&b"first"[..], b"second", &[0, 159, 146, 150]] {
            assert_eq!(
                outbox.append(payload, ROOMY).await.expect("append"),
                Appended::Stored
            );
        }
        let usage = outbox.usage().await.expect("usage");
        assert_eq!(usage.entries, 3);
        assert!(usage.bytes >= 15, "{usage:?}");
        let first_two = outbox.pending(2).await.expect("pending");
        assert_eq!(first_two.len(), 2);
        outbox.remove(&first_two[0].id).await.expect("remove");
        outbox.remove(&first_two[0].id).await.expect("remove again");
        assert_eq!(
            payloads(f).await,
            [b"second".to_vec(), vec![0, 159, 146, 150]],
            "binary payloads survive"
        );
    }

    /// At either bound the outbox refuses the new delivery and keeps every queued one.
    pub async fn a_full_outbox_refuses_and_keeps_what_it_holds(f: &impl OutboxFixture) {
        let outbox = f.outbox();
        let three = OutboxLimits {
            max_entries: 3,
            ..ROOMY
        };
        for n in 0..3u8 {
            assert_eq!(
                outbox.append(&[n], three).await.expect("append"),
                Appended::Stored
            );
        }
        assert_eq!(
            outbox.append(b"fourth", three).await.expect("append"),
            Appended::Full(OutboxBound::Entries)
        );
        assert_eq!(payloads(f).await, [vec![0], vec![1], vec![2]]);

        for entry in outbox.pending(10).await.expect("pending") {
            outbox.remove(&entry.id).await.expect("remove");
        }
        // 10 kB each under a 36 kB bound: three fit whatever the backend's overhead per entry
        // (under 2 kB), a fourth does not.
        let tight = OutboxLimits {
            max_bytes: 36_000,
            ..ROOMY
        };
        let big = vec![b'x'; 10_000];
        let mut stored = 0;
        while outbox.append(&big, tight).await.expect("append") == Appended::Stored {
            stored += 1;
            assert!(stored <= 3, "the byte bound is not enforced");
        }
        assert_eq!(stored, 3);
        assert_eq!(
            outbox.append(&big, tight).await.expect("append"),
            Appended::Full(OutboxBound::Bytes)
        );
        assert_eq!(
            outbox.append(&[1], tight).await.expect("append"),
            Appended::Stored,
            "a delivery that still fits is taken"
        );
        assert_eq!(outbox.usage().await.expect("usage").entries, 4);
    }

    /// The dead letters keep the newest within their bounds, dropping the oldest, and say how
    /// many they dropped; the entry moved is no longer pending.
    pub async fn dead_letters_keep_the_newest_within_their_bounds(f: &impl OutboxFixture) {
        let outbox = f.outbox();
        let three = OutboxLimits {
            max_entries: 3,
            ..ROOMY
        };
        let mut dropped = 0;
        for n in 0..5u8 {
            assert_eq!(
                outbox.append(&[n], ROOMY).await.expect("append"),
                Appended::Stored
            );
            let entry = outbox.pending(1).await.expect("pending").remove(0);
            dropped += outbox
                .dead_letter(&entry, &format!("reason {n}"), three)
                .await
                .expect("dead letter");
        }
        assert_eq!(dropped, 2);
        assert_eq!(outbox.usage().await.expect("usage").entries, 0);
        assert_eq!(
            f.dead_letters().await,
            [
                (vec![2], "reason 2".to_owned()),
                (vec![3], "reason 3".to_owned()),
                (vec![4], "reason 4".to_owned()),
            ]
        );

        let tight = OutboxLimits {
            max_bytes: 25_000,
            ..ROOMY
        };
        let mut dropped = 0;
        for n in 0..4u8 {
            let payload = vec![b'a' + n; 10_000];
            outbox.append(&payload, ROOMY).await.expect("append");
            let entry = outbox.pending(1).await.expect("pending").remove(0);
            dropped += outbox
                .dead_letter(&entry, "too big", tight)
                .await
                .expect("dead letter");
        }
        let kept = f.dead_letters().await;
        assert!(
            (1..=2).contains(&kept.len()),
            "10 kB letters under a 25 kB bound: {} kept",
            kept.len()
        );
        assert_eq!(
            kept.last().map(|(p, _)| p.clone()),
            Some(vec![b'd'; 10_000]),
            "the newest stays"
        );
        assert_eq!(dropped as usize, 3 + 4 - kept.len());
    }
}
