//! The lake as statements see it: the tables' latest committed versions,
//! registered in a DataFusion session (with `pg_catalog`) that is built
//! once per set of versions and shared by every connection.
//!
//! Each statement asks for the session as of its start; statements that
//! start together share one check of the versions (listing each table's
//! log), and a session is rebuilt only when a publication committed.

use std::sync::Arc;
use std::time::Instant;

use datafusion::prelude::SessionContext;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use pgwire::api::query::ExtendedQueryHandler;
use tokio::sync::Mutex;

use super::functions;
use super::guard::ReadOnly;
use crate::config::Config;
use crate::lake::Lake;
use crate::query::{QueryError, lake_session};

/// The sessions over one lake.
pub(super) struct LakeSessions {
    lake: Lake,
    config: Config,
    latest: Mutex<Latest>,
    /// Describes prepared statements from their plans (it reads no table).
    describer: Arc<Parser>,
}

/// The last check of the versions.
#[derive(Default)]
struct Latest {
    /// When the check that found `pinned` current began.
    checked: Option<Instant>,
    pinned: Option<Arc<Pinned>>,
}

/// One set of table versions and the protocol service over its session.
pub(super) struct Pinned {
    /// The versions, in the order of [`Lake::versions`].
    pub versions: Vec<Option<u64>>,
    pub service: DfSessionService,
}

impl LakeSessions {
    pub(super) fn new(lake: Lake, config: Config) -> LakeSessions {
        let empty = DfSessionService::new(Arc::new(SessionContext::new()));
        LakeSessions {
            lake,
            config,
            latest: Mutex::new(Latest::default()),
            describer: ExtendedQueryHandler::query_parser(&empty),
        }
    }

    /// A parser that describes a statement from its plan.
    pub(super) fn describer(&self) -> &Parser {
        &self.describer
    }

    /// The session of the latest versions as found by a check begun at or
    /// after `since` (a statement's start); `None`: any check will do.
    pub(super) async fn latest(&self, since: Option<Instant>) -> Result<Arc<Pinned>, QueryError> {
        let mut latest = self.latest.lock().await;
        if let (Some(checked), Some(pinned)) = (latest.checked, &latest.pinned)
            && since.is_none_or(|since| checked >= since)
        {
            return Ok(Arc::clone(pinned));
        }
        let began = Instant::now();
        let versions = self.lake.versions().await?;
        let pinned = match &latest.pinned {
            Some(pinned) if pinned.versions == versions => Arc::clone(pinned),
            _ => Arc::new(self.pin().await?),
        };
        latest.checked = Some(began);
        latest.pinned = Some(Arc::clone(&pinned));
        Ok(pinned)
    }

    /// Whether a publication committed since `versions` were current.
    pub(super) async fn changed_since(&self, versions: &[Option<u64>]) -> bool {
        self.lake.versions().await.is_ok_and(|now| now != versions)
    }

    /// A new session over the latest versions.
    async fn pin(&self) -> Result<Pinned, QueryError> {
        let (ctx, versions) = lake_session(&self.lake, &self.config).await?;
        let catalog = ctx
            .state()
            .config()
            .options()
            .catalog
            .default_catalog
            .clone();
        setup_pg_catalog(&ctx, &catalog, EmptyContextProvider).map_err(|e| QueryError::Sql(*e))?;
        ctx.register_udf(functions::version());
        ctx.register_udf(functions::pg_get_serial_sequence());
        ctx.register_udf(functions::pg_collation_is_visible());
        ctx.register_udf(functions::JsonBuildObject::udf());
        ctx.register_udf(functions::to_regtype(&ctx).await?);
        tracing::info!("SQL server: serving the lake's versions {versions:?}");
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(ReadOnly),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let service = DfSessionService::new_with_hooks(Arc::new(ctx), hooks);
        Ok(Pinned { versions, service })
    }
}
