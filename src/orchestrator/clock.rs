//! Time as the orchestrator sees it, behind a trait so that schedules,
//! sensor pokes and retry backoffs are tested without sleeping.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The current time and a way to wait.
#[async_trait::async_trait]
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current wall-clock time.
    fn now(&self) -> DateTime<Utc>;
    /// Waits for `duration`.
    async fn sleep(&self, duration: Duration);
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// A virtual clock for tests: `sleep` moves it forward at once, to the
/// time the sleep would have ended, and runs the actions due by then
/// (e.g. files that "arrive" at 03:25). Exact when one task sleeps at a
/// time, which is how the tests use it.
#[cfg(test)]
#[derive(Debug)]
pub struct TestClock {
    state: std::sync::Mutex<TestClockState>,
}

#[cfg(test)]
type Action = Box<dyn FnOnce() + Send>;

#[cfg(test)]
struct TestClockState {
    now: DateTime<Utc>,
    actions: Vec<(DateTime<Utc>, Action)>,
}

#[cfg(test)]
impl std::fmt::Debug for TestClockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "TestClock at {} ({} actions)",
            self.now,
            self.actions.len()
        )
    }
}

#[cfg(test)]
impl TestClock {
    /// A clock reading `start` now.
    pub fn at(start: DateTime<Utc>) -> TestClock {
        TestClock {
            state: std::sync::Mutex::new(TestClockState {
                now: start,
                actions: Vec::new(),
            }),
        }
    }

    /// Runs `action` when the clock passes `time`.
    pub fn on(&self, time: DateTime<Utc>, action: impl FnOnce() + Send + 'static) {
        self.state
            .lock()
            .unwrap()
            .actions
            .push((time, Box::new(action)));
    }
}

#[cfg(test)]
#[async_trait::async_trait]
impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        self.state.lock().unwrap().now
    }

    async fn sleep(&self, duration: Duration) {
        let due = {
            let mut state = self.state.lock().unwrap();
            let end = chrono::Duration::from_std(duration)
                .ok()
                .and_then(|d| state.now.checked_add_signed(d))
                .unwrap_or(DateTime::<Utc>::MAX_UTC);
            state.now = state.now.max(end);
            let now = state.now;
            let (due, later) = std::mem::take(&mut state.actions)
                .into_iter()
                .partition(|(time, _)| *time <= now);
            state.actions = later;
            due
        };
        for (_, action) in due {
            action();
        }
        tokio::task::yield_now().await;
    }
}
