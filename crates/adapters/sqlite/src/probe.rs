//! [`Probe`]: readiness (a `SELECT 1`) and the pool's gauges. Waiters are not counted: the
//! embedded store is for one machine, not for a fleet to watch.

use async_trait::async_trait;
use relay_ports::{BoxError, PoolStats, Probe};

use crate::SqliteStore;

#[async_trait]
impl Probe for SqliteStore {
    async fn ping(&self) -> Result<(), BoxError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let open = self.pool.size();
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some(PoolStats {
            max: self.pool.options().get_max_connections(),
            open,
            in_use: open.saturating_sub(idle),
            waiting: None,
        })
    }
}
