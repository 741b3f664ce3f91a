//! [`Probe`]: readiness (a `SELECT 1` on a pooled connection) and the pool's gauges.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use relay_ports::{BoxError, PoolStats, Probe};

use crate::PgStore;

#[async_trait]
impl Probe for PgStore {
    async fn ping(&self) -> Result<(), BoxError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        Ok(())
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some(PoolStats {
            max: self.pool.options().get_max_connections(),
            open,
            in_use: open.saturating_sub(idle),
            waiting: Some(self.waiting.load(Ordering::Relaxed)),
        })
    }
}
