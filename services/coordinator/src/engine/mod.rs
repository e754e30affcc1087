//! The coordinator's core services, free of transport types: Testrun
//! operations (`testruns`), watching them (`watch`), what runners do
//! through their streams (`runners`), handing tests out (`dispatch`),
//! storing results in batches (`finisher`), taking tests back from lost
//! runners (`reaper`) and saying which Testruns wait for a runner pool
//! (`pools`); operating the runner fleet (`fleet`).

pub mod cases;
pub mod collector;
pub mod content;
pub mod dispatch;
pub mod finisher;
pub mod fleet;
pub mod history;
pub mod pools;
pub mod reaper;
pub mod runners;
pub mod testruns;
pub mod watch;
