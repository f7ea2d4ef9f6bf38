//! `Budgets`: token accounting per agent group, so that spending caps cannot be overspent.
//! Before every model call a run reserves the most the call can cost (an input estimate plus
//! `max_tokens`); after it, the reservation is settled with the real usage. Reservations are
//! taken here, one message at a time, so concurrent runs cannot together pass a cap: a call
//! whose reservation does not fit in what is left of the day or the month is not made.
//! Days and months follow the configured time zone. Usage is recomputed from `api_calls` at
//! start-up, so a restart neither forgets spending nor counts it twice.

use std::collections::HashMap;

use actix::prelude::*;
use chrono::{Datelike, TimeZone};
use chrono_tz::Tz;
use serde::Serialize;

use crate::bus::{EventBus, Publish};
use crate::events::GatewayEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Day,
    Month,
}

impl Window {
    pub fn as_str(&self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Month => "month",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("the agent group's {} token budget is used up ({used} of {cap} tokens, {requested} more needed)", window.as_str())]
pub struct BudgetExceeded {
    pub window: Window,
    pub cap: u64,
    pub used: u64,
    pub requested: u64,
}

/// A group's caps (`None`: unlimited). Sent on create, update and at start-up.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetCaps {
    pub group_id: String,
    pub day: Option<u64>,
    pub month: Option<u64>,
}

/// Forget a deleted group.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetGroup {
    pub group_id: String,
}

/// Reserve `tokens` for a model call of a run of `group_id`.
#[derive(Message)]
#[rtype(result = "Result<u64, BudgetExceeded>")]
pub struct Reserve {
    pub group_id: String,
    pub tokens: u64,
}

/// Replace a reservation by what the call really used.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Settle {
    pub reservation: u64,
    pub used: u64,
}

/// Give a reservation back unused (a failed call, a run that ended).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release {
    pub reservation: u64,
}

/// A group's spending against its caps.
#[derive(Message)]
#[rtype(result = "BudgetStatus")]
pub struct GetBudget {
    pub group_id: String,
}

#[derive(Debug, Clone, Serialize, MessageResponse)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    pub tokens_today: u64,
    pub tokens_this_month: u64,
    pub reserved: u64,
    pub budget_max_tokens_day: Option<u64>,
    pub budget_max_tokens_month: Option<u64>,
    /// The current day (`YYYY-MM-DD`) and month (`YYYY-MM`) in the budget time zone.
    pub day: String,
    pub month: String,
    pub time_zone: String,
}

#[derive(Debug, Default)]
struct Account {
    cap_day: Option<u64>,
    cap_month: Option<u64>,
    used_day: u64,
    used_month: u64,
    reserved: u64,
    warned_day: bool,
    warned_month: bool,
}

pub struct Budgets {
    tz: Tz,
    bus: Addr<EventBus>,
    accounts: HashMap<String, Account>,
    reservations: HashMap<u64, (String, u64)>,
    next: u64,
    day: (i32, u32, u32),
    month: (i32, u32),
}

/// The start (unix ms) of the current day and month in `tz`.
pub fn window_starts(tz: Tz, now_ms: i64) -> (i64, i64) {
    let now = tz.timestamp_millis_opt(now_ms).single().unwrap_or_else(|| {
        tz.from_utc_datetime(
            &chrono::DateTime::from_timestamp_millis(now_ms)
                .unwrap_or_default()
                .naive_utc(),
        )
    });
    let start_of = |y, m, d| {
        tz.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .earliest()
            .map(|t| t.timestamp_millis())
            .unwrap_or(now_ms)
    };
    (
        start_of(now.year(), now.month(), now.day()),
        start_of(now.year(), now.month(), 1),
    )
}

impl Budgets {
    /// `day_usage` and `month_usage` are each group's tokens since the current day's and
    /// month's start (read from `api_calls` at start-up).
    pub fn new(
        tz: Tz,
        bus: Addr<EventBus>,
        day_usage: Vec<(String, u64)>,
        month_usage: Vec<(String, u64)>,
    ) -> Self {
        let (day, month) = Self::keys(tz);
        let mut accounts: HashMap<String, Account> = HashMap::new();
        for (g, t) in month_usage {
            accounts.entry(g).or_default().used_month = t;
        }
        for (g, t) in day_usage {
            accounts.entry(g).or_default().used_day = t;
        }
        Self {
            tz,
            bus,
            accounts,
            reservations: HashMap::new(),
            next: 1,
            day,
            month,
        }
    }

    fn keys(tz: Tz) -> ((i32, u32, u32), (i32, u32)) {
        let now = chrono::Utc::now().with_timezone(&tz);
        (
            (now.year(), now.month(), now.day()),
            (now.year(), now.month()),
        )
    }

    /// Start a new day or month when the clock has passed into one.
    fn roll(&mut self) {
        let (day, month) = Self::keys(self.tz);
        if day != self.day {
            self.day = day;
            for a in self.accounts.values_mut() {
                a.used_day = 0;
                a.warned_day = false;
            }
        }
        if month != self.month {
            self.month = month;
            for a in self.accounts.values_mut() {
                a.used_month = 0;
                a.warned_month = false;
            }
        }
    }

    fn warn_if_needed(&mut self, group_id: &str) {
        let Some(a) = self.accounts.get_mut(group_id) else {
            return;
        };
        let mut events = Vec::new();
        for (window, used, cap, warned) in [
            (Window::Day, a.used_day, a.cap_day, &mut a.warned_day),
            (
                Window::Month,
                a.used_month,
                a.cap_month,
                &mut a.warned_month,
            ),
        ] {
            if let Some(cap) = cap {
                if !*warned && used * 5 >= cap * 4 {
                    *warned = true;
                    events.push(GatewayEvent::BudgetWarning {
                        group_id: group_id.to_string(),
                        window: window.as_str().into(),
                        used,
                        cap,
                    });
                }
            }
        }
        for e in events {
            self.bus.do_send(Publish(e));
        }
    }
}

impl Actor for Budgets {
    type Context = Context<Self>;
}

impl actix::Supervised for Budgets {}

impl Handler<SetCaps> for Budgets {
    type Result = ();

    fn handle(&mut self, msg: SetCaps, _: &mut Context<Self>) {
        let a = self.accounts.entry(msg.group_id.clone()).or_default();
        a.cap_day = msg.day;
        a.cap_month = msg.month;
        self.warn_if_needed(&msg.group_id);
    }
}

impl Handler<ForgetGroup> for Budgets {
    type Result = ();

    fn handle(&mut self, msg: ForgetGroup, _: &mut Context<Self>) {
        self.accounts.remove(&msg.group_id);
    }
}

impl Handler<Reserve> for Budgets {
    type Result = Result<u64, BudgetExceeded>;

    fn handle(&mut self, msg: Reserve, _: &mut Context<Self>) -> Self::Result {
        self.roll();
        let a = self.accounts.entry(msg.group_id.clone()).or_default();
        for (window, used, cap) in [
            (Window::Day, a.used_day, a.cap_day),
            (Window::Month, a.used_month, a.cap_month),
        ] {
            if let Some(cap) = cap {
                if used + a.reserved + msg.tokens > cap {
                    let e = BudgetExceeded {
                        window,
                        cap,
                        used: used + a.reserved,
                        requested: msg.tokens,
                    };
                    self.bus.do_send(Publish(GatewayEvent::BudgetExceeded {
                        group_id: msg.group_id,
                        window: window.as_str().into(),
                        used: e.used,
                        cap,
                        requested: msg.tokens,
                    }));
                    return Err(e);
                }
            }
        }
        a.reserved += msg.tokens;
        let id = self.next;
        self.next += 1;
        self.reservations.insert(id, (msg.group_id, msg.tokens));
        Ok(id)
    }
}

impl Handler<Settle> for Budgets {
    type Result = ();

    fn handle(&mut self, msg: Settle, _: &mut Context<Self>) {
        self.roll();
        let Some((group, reserved)) = self.reservations.remove(&msg.reservation) else {
            return;
        };
        if let Some(a) = self.accounts.get_mut(&group) {
            a.reserved = a.reserved.saturating_sub(reserved);
            a.used_day += msg.used;
            a.used_month += msg.used;
        }
        self.warn_if_needed(&group);
    }
}

impl Handler<Release> for Budgets {
    type Result = ();

    fn handle(&mut self, msg: Release, _: &mut Context<Self>) {
        if let Some((group, reserved)) = self.reservations.remove(&msg.reservation) {
            if let Some(a) = self.accounts.get_mut(&group) {
                a.reserved = a.reserved.saturating_sub(reserved);
            }
        }
    }
}

impl Handler<GetBudget> for Budgets {
    type Result = BudgetStatus;

    fn handle(&mut self, msg: GetBudget, _: &mut Context<Self>) -> BudgetStatus {
        self.roll();
        let a = self.accounts.get(&msg.group_id);
        BudgetStatus {
            tokens_today: a.map_or(0, |a| a.used_day),
            tokens_this_month: a.map_or(0, |a| a.used_month),
            reserved: a.map_or(0, |a| a.reserved),
            budget_max_tokens_day: a.and_then(|a| a.cap_day),
            budget_max_tokens_month: a.and_then(|a| a.cap_month),
            day: format!("{:04}-{:02}-{:02}", self.day.0, self.day.1, self.day.2),
            month: format!("{:04}-{:02}", self.month.0, self.month.1),
            time_zone: self.tz.name().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_at_local_midnight() {
        // 2026-03-10T10:00:00Z is 2026-03-11 00:00 in Kiritimati (UTC+14).
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-10T10:30:00Z")
            .unwrap()
            .timestamp_millis();
        let (day, month) = window_starts(chrono_tz::Pacific::Kiritimati, now);
        assert_eq!(
            day,
            chrono::DateTime::parse_from_rfc3339("2026-03-10T10:00:00Z")
                .unwrap()
                .timestamp_millis()
        );
        assert_eq!(
            month,
            chrono::DateTime::parse_from_rfc3339("2026-02-28T10:00:00Z")
                .unwrap()
                .timestamp_millis()
        );
        let (day_utc, _) = window_starts(chrono_tz::UTC, now);
        assert_eq!(
            day_utc,
            chrono::DateTime::parse_from_rfc3339("2026-03-10T00:00:00Z")
                .unwrap()
                .timestamp_millis()
        );
    }
}
