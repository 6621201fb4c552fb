//! `postgres`: the reservation semantics as conditional UPDATEs
//! (`... WHERE on_hand - reserved >= qty`) in transactions on PostgreSQL
//! with `synchronous_commit = on`: the seed design (Aurora PostgreSQL).
//!
//! A cart's lines are updated in (location, sku) order so two carts never
//! deadlock; a reservation row is locked (`FOR UPDATE`) by its transition.
//! Connections: a fixed pool, each with its statements prepared once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement};

use super::{
    now_ms, Backend, CountItem, Ids, Line, Record, ReservationView, Shortage, Transition,
    TransitionOutcome,
};

/// Connections to PostgreSQL (its default `max_connections` is 100).
const POOL_CONNECTIONS: usize = 32;
/// Expired reservations swept per round.
const SWEEP_BATCH_MAX: i64 = 1_000;

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stock (
  location text NOT NULL, sku text NOT NULL,
  on_hand bigint NOT NULL, reserved bigint NOT NULL DEFAULT 0,
  version bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (location, sku));
CREATE INDEX IF NOT EXISTS stock_sku ON stock (sku);
CREATE TABLE IF NOT EXISTS reservations (
  id text PRIMARY KEY, status text NOT NULL, expires_ms bigint NOT NULL, lines text NOT NULL);
CREATE INDEX IF NOT EXISTS reservations_held ON reservations (expires_ms) WHERE status = 'held';
";

struct Conn {
    client: Client,
    hold: Statement,
    available: Statement,
    insert_res: Statement,
    lock_res: Statement,
    unhold: Statement,
    set_status: Statement,
    record: Statement,
}

pub struct PostgresRival {
    pool: Vec<Arc<Mutex<Conn>>>,
    next: AtomicUsize,
    ids: Ids,
}

fn err(e: tokio_postgres::Error) -> String {
    format!("postgres: {e}")
}

/// The rival's database name: the harness makes it, letters, digits, `_`.
fn checked(database: &str) -> Result<&str, String> {
    if !database.is_empty()
        && database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        Ok(database)
    } else {
        Err(format!("{database}: not a plain database name"))
    }
}

/// Drops the rival's database (after a run), forcing its sessions out.
pub fn drop_database(url: &str, database: &str) -> Result<(), String> {
    let database = checked(database)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(err)?;
        tokio::spawn(connection);
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            .await
            .map_err(err)
    })
}

impl PostgresRival {
    /// Creates `database` on the server of `url`, its schema, and the pool.
    pub async fn create(url: &str, database: &str) -> Result<PostgresRival, String> {
        let database = checked(database)?;
        {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(err)?;
            tokio::spawn(connection);
            client
                .batch_execute(&format!("CREATE DATABASE {database}"))
                .await
                .map_err(err)?;
        }
        Self::connect(&format!("{url} dbname={database}")).await
    }

    pub async fn connect(url: &str) -> Result<PostgresRival, String> {
        let mut pool = Vec::with_capacity(POOL_CONNECTIONS);
        for i in 0..POOL_CONNECTIONS {
            let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(err)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::warn!(error = %e, "postgres connection");
                }
            });
            if i == 0 {
                client.batch_execute(SCHEMA).await.map_err(err)?;
            }
            client
                .batch_execute("SET synchronous_commit = on")
                .await
                .map_err(err)?;
            let conn = Conn {
                hold: client
                    .prepare(
                        "UPDATE stock SET reserved = reserved + $3, version = version + 1 \
                         WHERE location = $1 AND sku = $2 AND on_hand - reserved >= $3",
                    )
                    .await
                    .map_err(err)?,
                available: client
                    .prepare(
                        "SELECT greatest(on_hand - reserved, 0) FROM stock \
                         WHERE location = $1 AND sku = $2",
                    )
                    .await
                    .map_err(err)?,
                insert_res: client
                    .prepare(
                        "INSERT INTO reservations (id, status, expires_ms, lines) \
                         VALUES ($1, 'held', $2, $3)",
                    )
                    .await
                    .map_err(err)?,
                lock_res: client
                    .prepare(
                        "SELECT status, expires_ms, lines FROM reservations WHERE id = $1 FOR UPDATE",
                    )
                    .await
                    .map_err(err)?,
                unhold: client
                    .prepare(
                        "UPDATE stock SET reserved = reserved - $3, on_hand = on_hand - $4, \
                         version = version + 1 WHERE location = $1 AND sku = $2",
                    )
                    .await
                    .map_err(err)?,
                set_status: client
                    .prepare("UPDATE reservations SET status = $2 WHERE id = $1")
                    .await
                    .map_err(err)?,
                record: client
                    .prepare(
                        "SELECT on_hand, reserved, version FROM stock WHERE location = $1 AND sku = $2",
                    )
                    .await
                    .map_err(err)?,
                client,
            };
            pool.push(Arc::new(Mutex::new(conn)));
        }
        Ok(PostgresRival {
            pool,
            next: AtomicUsize::new(0),
            ids: Ids::new('p'),
        })
    }

    fn conn(&self) -> Arc<Mutex<Conn>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        self.pool[i].clone()
    }

    /// Expires due reservations every 100 ms.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let ids: Vec<String> = {
                    let c = me.conn();
                    let c = c.lock().await;
                    match c
                        .client
                        .query(
                            "SELECT id FROM reservations WHERE status = 'held' \
                             AND expires_ms <= $1 ORDER BY expires_ms LIMIT $2",
                            &[&(now_ms() as i64), &SWEEP_BATCH_MAX],
                        )
                        .await
                    {
                        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
                        Err(e) => {
                            tracing::warn!(error = %e, "sweep");
                            continue;
                        }
                    }
                };
                for id in ids {
                    if let Err(e) = me.change(&id, None).await {
                        tracing::warn!(error = %e, "expire");
                    }
                }
            }
        });
    }

    /// A transition (`None`: expire if due) in one transaction.
    async fn change(&self, id: &str, t: Option<Transition>) -> Result<TransitionOutcome, String> {
        let c = self.conn();
        let mut c = c.lock().await;
        let Conn {
            client,
            lock_res,
            unhold,
            set_status,
            ..
        } = &mut *c;
        let tx = client.transaction().await.map_err(err)?;
        let Some(row) = tx.query_opt(&*lock_res, &[&id]).await.map_err(err)? else {
            return Ok(TransitionOutcome::NotFound);
        };
        let (mut status, expires_ms, lines_json): (String, i64, String) =
            (row.get(0), row.get(1), row.get(2));
        let mut lines: Vec<Line> = serde_json::from_str(&lines_json).map_err(|e| e.to_string())?;
        lines.sort_by(|a, b| (&a.location, &a.sku).cmp(&(&b.location, &b.sku)));
        // Release the lines' holds (and take them off on_hand to fulfil).
        async fn give_back(
            tx: &tokio_postgres::Transaction<'_>,
            unhold: &Statement,
            lines: &[Line],
            fulfil: bool,
        ) -> Result<(), String> {
            for l in lines {
                let off = if fulfil { l.qty } else { 0 };
                tx.execute(unhold, &[&l.location, &l.sku, &l.qty, &off])
                    .await
                    .map_err(err)?;
            }
            Ok(())
        }
        if status == "held" && expires_ms <= now_ms() as i64 {
            give_back(&tx, unhold, &lines, false).await?;
            tx.execute(&*set_status, &[&id, &"expired"])
                .await
                .map_err(err)?;
            status = "expired".into();
        }
        let next = match (t, status.as_str()) {
            (None, _) => None,
            (Some(Transition::Confirm), "held") => Some(("confirmed", None)),
            (Some(Transition::Confirm), "confirmed") => None,
            (Some(Transition::Release), "held" | "confirmed") => Some(("released", Some(false))),
            (Some(Transition::Release), "released" | "expired") => None,
            (Some(Transition::Fulfil), "confirmed") => Some(("fulfilled", Some(true))),
            _ => {
                tx.commit().await.map_err(err)?;
                return Ok(TransitionOutcome::NotHeld(status));
            }
        };
        if let Some((to, unhold_lines)) = next {
            if let Some(fulfil) = unhold_lines {
                give_back(&tx, unhold, &lines, fulfil).await?;
            }
            tx.execute(&*set_status, &[&id, &to]).await.map_err(err)?;
            status = to.into();
        }
        tx.commit().await.map_err(err)?;
        Ok(TransitionOutcome::Done(ReservationView::new(
            id,
            &status,
            expires_ms as u64,
            lines,
        )))
    }
}

impl Backend for PostgresRival {
    async fn count(&self, items: Vec<CountItem>) -> Result<(), String> {
        let c = self.conn();
        let c = c.lock().await;
        let (mut locs, mut skus, mut ohs) = (Vec::new(), Vec::new(), Vec::new());
        for it in items {
            locs.push(it.location);
            skus.push(it.sku);
            ohs.push(it.on_hand);
        }
        c.client
            .execute(
                "INSERT INTO stock (location, sku, on_hand) \
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
                 ON CONFLICT (location, sku) DO UPDATE \
                 SET on_hand = EXCLUDED.on_hand, version = stock.version + 1",
                &[&locs, &skus, &ohs],
            )
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn record(&self, location: &str, sku: &str) -> Result<Record, String> {
        let c = self.conn();
        let c = c.lock().await;
        let row = c
            .client
            .query_opt(&c.record, &[&location, &sku])
            .await
            .map_err(err)?;
        Ok(match row {
            Some(r) => Record::new(location, sku, r.get(0), r.get(1), r.get(2)),
            None => Record::new(location, sku, 0, 0, 0),
        })
    }

    async fn availability(&self, sku: &str) -> Result<Vec<(String, i64)>, String> {
        let c = self.conn();
        let c = c.lock().await;
        let rows = c
            .client
            .query(
                "SELECT location, greatest(on_hand - reserved, 0) FROM stock WHERE sku = $1",
                &[&sku],
            )
            .await
            .map_err(err)?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    async fn adjust(
        &self,
        location: &str,
        sku: &str,
        delta: i64,
    ) -> Result<Result<Record, Record>, String> {
        let row = {
            let c = self.conn();
            let c = c.lock().await;
            c.client
                .query_opt(
                    "UPDATE stock SET on_hand = on_hand + $3, version = version + 1 \
                     WHERE location = $1 AND sku = $2 AND on_hand + $3 >= 0 \
                     RETURNING on_hand, reserved, version",
                    &[&location, &sku, &delta],
                )
                .await
                .map_err(err)?
        };
        Ok(match row {
            Some(r) => Ok(Record::new(location, sku, r.get(0), r.get(1), r.get(2))),
            None => Err(self.record(location, sku).await?),
        })
    }

    async fn reserve(
        &self,
        lines: Vec<Line>,
        ttl_s: u64,
    ) -> Result<Result<ReservationView, Vec<Shortage>>, String> {
        let id = self.ids.next();
        let expires_ms = now_ms() + ttl_s * 1000;
        let json = serde_json::to_string(&lines).map_err(|e| e.to_string())?;
        let mut order: Vec<&Line> = lines.iter().collect();
        order.sort_by(|a, b| (&a.location, &a.sku).cmp(&(&b.location, &b.sku)));
        let c = self.conn();
        let mut c = c.lock().await;
        let Conn {
            client,
            hold,
            available,
            insert_res,
            ..
        } = &mut *c;
        let tx = client.transaction().await.map_err(err)?;
        let mut short = Vec::new();
        for l in &order {
            let n = tx
                .execute(&*hold, &[&l.location, &l.sku, &l.qty])
                .await
                .map_err(err)?;
            if n == 0 {
                let avail: i64 = tx
                    .query_opt(&*available, &[&l.location, &l.sku])
                    .await
                    .map_err(err)?
                    .map(|r| r.get(0))
                    .unwrap_or(0);
                short.push(Shortage {
                    sku: l.sku.clone(),
                    location: l.location.clone(),
                    requested: l.qty,
                    available: avail,
                });
            }
        }
        if !short.is_empty() {
            tx.rollback().await.map_err(err)?;
            return Ok(Err(short));
        }
        tx.execute(&*insert_res, &[&id, &(expires_ms as i64), &json])
            .await
            .map_err(err)?;
        tx.commit().await.map_err(err)?;
        Ok(Ok(ReservationView::new(&id, "held", expires_ms, lines)))
    }

    async fn transition(&self, id: &str, t: Transition) -> Result<TransitionOutcome, String> {
        self.change(id, Some(t)).await
    }

    async fn get(&self, id: &str) -> Result<Option<ReservationView>, String> {
        let row = {
            let c = self.conn();
            let c = c.lock().await;
            c.client
                .query_opt(
                    "SELECT status, expires_ms, lines FROM reservations WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(err)?
        };
        let Some(r) = row else { return Ok(None) };
        let (status, expires_ms, lines): (String, i64, String) = (r.get(0), r.get(1), r.get(2));
        let lines = serde_json::from_str(&lines).map_err(|e| e.to_string())?;
        Ok(Some(ReservationView::new(
            id,
            &status,
            expires_ms as u64,
            lines,
        )))
    }
}
