//! What one instance hands to its next start and to the other instances: the visitor slots
//! saved at a graceful shutdown (`slot_snapshots`, `saved_slots`), and the live counts each
//! instance publishes every few seconds (`live_instances`, `live_paths`).

use std::time::{Duration, SystemTime};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Error, Statement};

use super::Conn;

pub(super) struct Statements {
    forget: Statement,
    save: Statement,
    take_slots: Statement,
    read_header: Statement,
    forget_header: Statement,
    publish: Statement,
    others_total: Statement,
    others_paths: Statement,
}

impl Statements {
    pub(super) async fn prepare(client: &Client) -> Result<Statements, Error> {
        Ok(Statements {
            // Saved slots go with their header (ON DELETE CASCADE).
            forget: client
                .prepare("DELETE FROM slot_snapshots WHERE instance = $1")
                .await?,
            save: client
                .prepare(
                    "WITH header AS (
                         INSERT INTO slot_snapshots (instance, saved_at, keys, next_ticket)
                         VALUES ($1, $2, $3, $4)
                     )
                     INSERT INTO saved_slots (instance, slot, tag, path_id, age_ms, registered_at, visit_id, page_left)
                     SELECT $1, s.* FROM unnest($5::int4[], $6::int8[], $7::int4[], $8::int8[],
                                                $9::timestamptz[], $10::int8[], $11::bool[])
                       AS s (slot, tag, path_id, age_ms, registered_at, visit_id, page_left)
                     WHERE s.path_id IN (SELECT id FROM paths)",
                )
                .await?,
            take_slots: client
                .prepare(
                    "DELETE FROM saved_slots WHERE instance = $1
                     RETURNING slot, tag, path_id, age_ms, registered_at, visit_id, page_left",
                )
                .await?,
            read_header: client
                .prepare("SELECT saved_at, keys, next_ticket FROM slot_snapshots WHERE instance = $1")
                .await?,
            forget_header: client
                .prepare("DELETE FROM slot_snapshots WHERE instance = $1")
                .await?,
            // Paths no longer open are removed, the others upserted: one statement, and no
            // key is both deleted and inserted in it.
            publish: client
                .prepare(
                    "WITH total AS (
                         INSERT INTO live_instances (instance, visitors, updated_at) VALUES ($1, $2, now())
                         ON CONFLICT (instance) DO UPDATE SET visitors = excluded.visitors, updated_at = now()
                     ), closed AS (
                         DELETE FROM live_paths WHERE instance = $1 AND path_id <> ALL ($3)
                     )
                     INSERT INTO live_paths (instance, path_id, visitors)
                     SELECT $1, p.path_id, p.visitors FROM unnest($3::int4[], $4::int4[]) AS p (path_id, visitors)
                     WHERE p.path_id IN (SELECT id FROM paths)
                     ON CONFLICT (instance, path_id) DO UPDATE SET visitors = excluded.visitors",
                )
                .await?,
            others_total: client
                .prepare(
                    "SELECT coalesce(sum(visitors), 0)::int8 FROM live_instances
                     WHERE instance <> $1 AND updated_at > now() - make_interval(secs => $2)",
                )
                .await?,
            others_paths: client
                .prepare(
                    "SELECT p.path, sum(l.visitors)::int8
                     FROM live_paths l JOIN live_instances i USING (instance) JOIN paths p ON p.id = l.path_id
                     WHERE l.instance <> $1 AND i.updated_at > now() - make_interval(secs => $2)
                     GROUP BY p.path",
                )
                .await?,
        })
    }
}

/// A visitor slot as saved across a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSlot {
    pub slot: u32,
    pub tag: u64,
    pub path_id: i32,
    /// Time since registration when the snapshot was taken.
    pub age: Duration,
    pub state: SavedState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedState {
    /// Not counted yet; it will be written with this registration time.
    Pending { registered_at: SystemTime },
    /// Counted as this visit; `page_left` once a time was reported.
    Counted { visit_id: i64, page_left: bool },
}

/// Everything an instance needs to honour its earlier tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotSnapshot {
    pub saved_at: SystemTime,
    pub keys: Vec<i64>,
    pub next_ticket: i64,
    pub slots: Vec<SavedSlot>,
}

/// A saved snapshot without its slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub saved_at: SystemTime,
    pub keys: Vec<i64>,
    pub next_ticket: i64,
}

impl Conn {
    /// Replaces `instance`'s saved slots with `snapshot`. Two statements and no transaction
    /// (the connection is shared): a failure in between leaves nothing saved, as a crash would.
    pub async fn save_slots(&self, instance: i16, snapshot: &SlotSnapshot) -> Result<(), Error> {
        let slots = &snapshot.slots;
        let numbers: Vec<i32> = slots.iter().map(|s| s.slot as i32).collect();
        let tags: Vec<i64> = slots.iter().map(|s| s.tag as i64).collect();
        let path_ids: Vec<i32> = slots.iter().map(|s| s.path_id).collect();
        let ages: Vec<i64> = slots
            .iter()
            .map(|s| s.age.as_millis().min(i64::MAX as u128) as i64)
            .collect();
        let registered: Vec<Option<SystemTime>> = slots
            .iter()
            .map(|s| match s.state {
                SavedState::Pending { registered_at } => Some(registered_at),
                SavedState::Counted { .. } => None,
            })
            .collect();
        let visit_ids: Vec<Option<i64>> = slots
            .iter()
            .map(|s| match s.state {
                SavedState::Counted { visit_id, .. } => Some(visit_id),
                SavedState::Pending { .. } => None,
            })
            .collect();
        let left: Vec<bool> = slots
            .iter()
            .map(|s| {
                matches!(
                    s.state,
                    SavedState::Counted {
                        page_left: true,
                        ..
                    }
                )
            })
            .collect();
        self.client
            .execute(&self.snapshots.forget, &[&instance])
            .await?;
        self.client
            .execute(
                &self.snapshots.save,
                &[
                    &instance,
                    &snapshot.saved_at,
                    &snapshot.keys,
                    &snapshot.next_ticket,
                    &numbers,
                    &tags,
                    &path_ids,
                    &ages,
                    &registered,
                    &visit_ids,
                    &left,
                ],
            )
            .await
            .map(drop)
    }

    /// Reads and deletes `instance`'s saved slots: a restored token counts once, even if
    /// this start fails later and another follows. The header comes back; the slots are
    /// handed to `each` one at a time as they arrive (a busy instance saves 65,536 of them,
    /// several megabytes as rows held at once).
    pub async fn take_slots(
        &self,
        instance: i16,
        mut each: impl FnMut(&SnapshotHeader, SavedSlot),
    ) -> Result<Option<SnapshotHeader>, Error> {
        let Some(header) = self
            .client
            .query_opt(&self.snapshots.read_header, &[&instance])
            .await?
        else {
            return Ok(None);
        };
        let header = SnapshotHeader {
            saved_at: header.get(0),
            keys: header.get(1),
            next_ticket: header.get(2),
        };
        let rows = self
            .client
            .query_raw(
                &self.snapshots.take_slots,
                [&instance as &(dyn ToSql + Sync)],
            )
            .await?;
        let mut rows = std::pin::pin!(rows);
        while let Some(row) = super::next_row(rows.as_mut()).await {
            let row = row?;
            let registered_at: Option<SystemTime> = row.get(4);
            each(
                &header,
                SavedSlot {
                    slot: row.get::<_, i32>(0) as u32,
                    tag: row.get::<_, i64>(1) as u64,
                    path_id: row.get(2),
                    age: Duration::from_millis(row.get::<_, i64>(3).max(0) as u64),
                    state: match registered_at {
                        Some(registered_at) => SavedState::Pending { registered_at },
                        None => SavedState::Counted {
                            visit_id: row.get::<_, Option<i64>>(5).unwrap_or_default(),
                            page_left: row.get(6),
                        },
                    },
                },
            );
        }
        self.client
            .execute(&self.snapshots.forget_header, &[&instance])
            .await?;
        Ok(Some(header))
    }

    /// Publishes what this instance has open now: its total, and its busiest paths
    /// `(path id, visitors)`.
    pub async fn publish_live(
        &self,
        instance: i16,
        visitors: i32,
        paths: &[(i32, i32)],
    ) -> Result<(), Error> {
        let ids: Vec<i32> = paths.iter().map(|p| p.0).collect();
        let counts: Vec<i32> = paths.iter().map(|p| p.1).collect();
        self.client
            .execute(
                &self.snapshots.publish,
                &[&instance, &visitors, &ids, &counts],
            )
            .await
            .map(drop)
    }

    /// What the other instances published within `fresh`: their total and `(path, visitors)`.
    pub async fn others_live(
        &self,
        instance: i16,
        fresh: Duration,
    ) -> Result<(i64, Vec<(String, i64)>), Error> {
        let seconds = fresh.as_secs_f64();
        let total: i64 = self
            .client
            .query_one(&self.snapshots.others_total, &[&instance, &seconds])
            .await?
            .get(0);
        let rows = self
            .client
            .query(&self.snapshots.others_paths, &[&instance, &seconds])
            .await?;
        Ok((
            total,
            rows.iter().map(|row| (row.get(0), row.get(1))).collect(),
        ))
    }
}
