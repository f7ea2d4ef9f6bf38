//! Human approval of risky tool calls. `ApprovalDesk` owns the rules (per tool, with
//! conservative defaults by risk) and starts one `ApprovalRequest` actor per pending request,
//! which holds the waiting run's answer channel and its own timeout. A run asks the desk before each
//! tool call; a call that needs a person waits (without blocking a thread) until someone
//! approves or rejects it, or the timeout applies its action. Requests are persisted: after a
//! restart their timers are re-armed, and ones that expired meanwhile are resolved at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use agent_runner::{RiskLevel, ToolBox};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::bus::{EventBus, Publish};
use crate::events::GatewayEvent;
use crate::store::approvals::{
    ApprovalRow, DecideApproval, DeleteRule as DeleteRuleRow, InsertApproval, RuleRow, SaveRule,
};
use crate::store::runs::SetRunWaiting;
use crate::store::{Store, StoreError};
use crate::time::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn parse_risk(s: &str) -> Option<RiskLevel> {
    match s {
        "low" => Some(RiskLevel::Low),
        "medium" => Some(RiskLevel::Medium),
        "high" => Some(RiskLevel::High),
        "critical" => Some(RiskLevel::Critical),
        _ => None,
    }
}

/// The rule that applies when the admin set none: approval from high risk up, timeouts by
/// risk, reject on timeout.
pub fn default_rule(tool: &str, risk: RiskLevel) -> RuleRow {
    RuleRow {
        tool_name: tool.to_string(),
        risk_level: risk.as_str().to_string(),
        require_approval: risk >= RiskLevel::High,
        timeout_seconds: match risk {
            RiskLevel::Low => 60,
            RiskLevel::Medium => 120,
            RiskLevel::High => 300,
            RiskLevel::Critical => 600,
        },
        timeout_action: "reject".into(),
        auto_approve: None,
    }
}

/// Whether a call's input meets the rule's auto-approve conditions (all must hold):
/// `inputEquals` (each listed field equals the value) and `urlHostIn` (the `url` field's host
/// is one of these).
fn auto_approved(conditions: &Value, input: &Value) -> bool {
    let Some(c) = conditions.as_object() else {
        return false;
    };
    if c.is_empty() {
        return false;
    }
    c.iter().all(|(k, v)| match k.as_str() {
        "inputEquals" => v
            .as_object()
            .is_some_and(|fields| fields.iter().all(|(f, want)| &input[f] == want)),
        "urlHostIn" => {
            let host = input["url"]
                .as_str()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
            match (host, v.as_array()) {
                (Some(h), Some(list)) => list
                    .iter()
                    .any(|x| x.as_str().is_some_and(|x| x.eq_ignore_ascii_case(&h))),
                _ => false,
            }
        }
        _ => false,
    })
}

fn validate_conditions(v: &Value) -> Result<(), ApprovalError> {
    let bad = |m: &str| Err(ApprovalError::Invalid(format!("autoApprove: {m}")));
    let Some(c) = v.as_object() else {
        return bad("an object of conditions");
    };
    for (k, v) in c {
        match k.as_str() {
            "inputEquals" if v.is_object() => {}
            "urlHostIn" if v.as_array().is_some_and(|a| a.iter().all(Value::is_string)) => {}
            "inputEquals" => return bad("inputEquals is an object of field: value"),
            "urlHostIn" => return bad("urlHostIn is a list of host names"),
            other => {
                return bad(&format!(
                    "unknown condition {other:?} (inputEquals, urlHostIn)"
                ))
            }
        }
    }
    Ok(())
}

/// Ask before a tool call; answers once the call may go ahead (`Ok`) or not (`Err(reason)`,
/// which the model sees as the tool's error).
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Gate {
    pub run_id: String,
    pub tool_use_id: String,
    pub tool: String,
    pub input: Value,
    pub risk: RiskLevel,
}

/// A person's decision.
#[derive(Message)]
#[rtype(result = "Result<ApprovalRow, ApprovalError>")]
pub struct Decide {
    pub id: String,
    pub approve: bool,
    pub by: String,
    pub reason: Option<String>,
}

/// The effective rule of every registered tool (and rules of tools not registered now).
#[derive(Message)]
#[rtype(result = "Vec<EffectiveRule>")]
pub struct ListRules;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveRule {
    #[serde(flatten)]
    pub rule: RuleRow,
    /// `default` or `custom`.
    pub source: &'static str,
}

#[derive(Message)]
#[rtype(result = "Result<EffectiveRule, ApprovalError>")]
pub struct UpsertRule(pub RuleRow);

#[derive(Message)]
#[rtype(result = "Result<EffectiveRule, ApprovalError>")]
pub struct DeleteRule {
    pub tool_name: String,
}

/// A request was resolved (sent by its actor as it stops).
#[derive(Message)]
#[rtype(result = "()")]
struct Forget {
    id: String,
}

/// Resolve a request (a person's decision); `Err` when it was resolved already.
#[derive(Message)]
#[rtype(result = "Result<ApprovalRow, ()>")]
struct Resolve {
    status: &'static str,
    by: String,
    reason: Option<String>,
}

pub struct ApprovalDesk {
    store: Store,
    bus: Addr<EventBus>,
    toolbox: Arc<ToolBox>,
    rules: HashMap<String, RuleRow>,
    /// One actor per request someone may still decide.
    waiting: HashMap<String, Addr<ApprovalRequest>>,
    restored: Vec<ApprovalRow>,
}

impl ApprovalDesk {
    pub fn new(
        store: Store,
        bus: Addr<EventBus>,
        toolbox: Arc<ToolBox>,
        rules: Vec<RuleRow>,
        pending: Vec<ApprovalRow>,
    ) -> Self {
        Self {
            store,
            bus,
            toolbox,
            rules: rules
                .into_iter()
                .map(|r| (r.tool_name.clone(), r))
                .collect(),
            waiting: HashMap::new(),
            restored: pending,
        }
    }

    fn effective(&self, tool: &str, risk: RiskLevel) -> EffectiveRule {
        match self.rules.get(tool) {
            Some(r) => {
                let mut rule = r.clone();
                // Critical tools always need a person, whatever the rule says.
                if rule.risk_level == "critical" {
                    rule.require_approval = true;
                }
                EffectiveRule {
                    rule,
                    source: "custom",
                }
            }
            None => EffectiveRule {
                rule: default_rule(tool, risk),
                source: "default",
            },
        }
    }

    fn tool_risk(&self, tool: &str) -> RiskLevel {
        self.toolbox.get(tool).map_or(RiskLevel::High, |t| t.risk)
    }

    fn spawn_request(
        &mut self,
        row: ApprovalRow,
        answer: Option<oneshot::Sender<Result<(), String>>>,
        ctx: &mut Context<Self>,
    ) {
        let id = row.id.clone();
        let request = ApprovalRequest {
            row,
            answer,
            store: self.store.clone(),
            bus: self.bus.clone(),
            desk: ctx.address(),
            resolved: false,
        }
        .start();
        self.waiting.insert(id, request);
    }
}

impl Actor for ApprovalDesk {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Requests from before a restart: timers re-armed; expired ones resolve at once.
        for row in std::mem::take(&mut self.restored) {
            self.spawn_request(row, None, ctx);
        }
    }
}

impl actix::Supervised for ApprovalDesk {}

impl Handler<Gate> for ApprovalDesk {
    type Result = ResponseActFuture<Self, Result<(), String>>;

    fn handle(&mut self, msg: Gate, _: &mut Context<Self>) -> Self::Result {
        let rule = self.effective(&msg.tool, msg.risk).rule;
        let auto = rule
            .auto_approve
            .as_ref()
            .is_some_and(|c| auto_approved(c, &msg.input));
        if !rule.require_approval || (auto && rule.risk_level != "critical") {
            return Box::pin(fut::ready(Ok(())));
        }
        let now = now_ms();
        let row = ApprovalRow {
            id: uuid::Uuid::new_v4().to_string(),
            run_id: Some(msg.run_id.clone()),
            tool_use_id: msg.tool_use_id,
            tool_name: msg.tool.clone(),
            input: msg.input,
            risk_level: rule.risk_level.clone(),
            reason: None,
            status: "pending".into(),
            decided_by: None,
            decision_reason: None,
            timeout_action: rule.timeout_action.clone(),
            created_at: now,
            expires_at: now + i64::from(rule.timeout_seconds) * 1000,
            decided_at: None,
        };
        let (tx, rx) = oneshot::channel();
        let store = self.store.clone();
        let stored = row.clone();
        Box::pin(
            async move {
                let r = store.send(InsertApproval(stored)).await;
                // Recorded before it is announced: whoever hears of it sees the run waiting.
                let _ = store
                    .send(SetRunWaiting {
                        id: msg.run_id,
                        waiting: true,
                    })
                    .await;
                r
            }
            .into_actor(self)
            .then(move |res, act, ctx| {
                let ok = matches!(res, Ok(Ok(())));
                if ok {
                    act.bus.do_send(Publish(GatewayEvent::ApprovalRequired {
                        approval_id: row.id.clone(),
                        run_id: row.run_id.clone(),
                        tool_name: row.tool_name.clone(),
                        input: row.input.clone(),
                        risk_level: row.risk_level.clone(),
                        expires_at: crate::time::rfc3339(row.expires_at),
                    }));
                    act.spawn_request(row, Some(tx), ctx);
                }
                async move {
                    if !ok {
                        return Err(
                            "the approval request could not be recorded; the call was not made"
                                .to_string(),
                        );
                    }
                    rx.await.unwrap_or_else(|_| {
                        Err("the approval request was dropped; the call was not made".into())
                    })
                }
                .into_actor(act)
            }),
        )
    }
}

impl Handler<Forget> for ApprovalDesk {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        self.waiting.remove(&msg.id);
    }
}

impl Handler<Decide> for ApprovalDesk {
    type Result = ResponseActFuture<Self, Result<ApprovalRow, ApprovalError>>;

    fn handle(&mut self, msg: Decide, _: &mut Context<Self>) -> Self::Result {
        let status = if msg.approve { "approved" } else { "rejected" };
        let request = self.waiting.get(&msg.id).cloned();
        let store = self.store.clone();
        let id = msg.id.clone();
        Box::pin(
            async move {
                if let Some(request) = request {
                    // A request that stopped meanwhile (its timeout) answers through the store.
                    if let Ok(Ok(row)) = request
                        .send(Resolve {
                            status,
                            by: msg.by,
                            reason: msg.reason,
                        })
                        .await
                    {
                        return Ok(row);
                    }
                }
                match store
                    .send(crate::store::approvals::GetApproval { id: id.clone() })
                    .await
                {
                    Ok(Ok(Some(row))) if row.status == "pending" => Err(ApprovalError::Conflict(
                        "the request has expired; its timeout action applies".into(),
                    )),
                    Ok(Ok(Some(row))) => Err(ApprovalError::Conflict(format!(
                        "the request was already decided ({}); nothing changed",
                        row.status
                    ))),
                    Ok(Ok(None)) => Err(ApprovalError::NotFound(format!(
                        "no approval request with id {id}"
                    ))),
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(StoreError::Panic(e.to_string()).into()),
                }
            }
            .into_actor(self),
        )
    }
}

/// One pending request: it holds the waiting run's answer and its own timeout, and stops once
/// resolved (a later decision then finds the store's record and gets a 409).
pub struct ApprovalRequest {
    row: ApprovalRow,
    /// The run waiting for the answer (none for requests restored after a restart).
    answer: Option<oneshot::Sender<Result<(), String>>>,
    store: Store,
    bus: Addr<EventBus>,
    desk: Addr<ApprovalDesk>,
    resolved: bool,
}

impl ApprovalRequest {
    /// Record the outcome, answer the run, announce it, stop.
    fn resolve(
        &mut self,
        status: &'static str,
        by: String,
        reason: Option<String>,
        ctx: &mut Context<Self>,
    ) -> Result<ApprovalRow, ()> {
        if std::mem::replace(&mut self.resolved, true) {
            return Err(());
        }
        let allowed = match status {
            "approved" => true,
            "expired" => self.row.timeout_action == "approve",
            _ => false,
        };
        let tool = &self.row.tool_name;
        let answer = if allowed {
            Ok(())
        } else if status == "expired" {
            Err(format!(
                "no one approved the call to {tool} in time; it was not made"
            ))
        } else {
            Err(format!(
                "a person rejected the call to {tool}{}",
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ))
        };
        self.store.do_send(DecideApproval {
            id: self.row.id.clone(),
            status,
            decided_by: by.clone(),
            reason: reason.clone(),
        });
        if let Some(run) = &self.row.run_id {
            self.store.do_send(SetRunWaiting {
                id: run.clone(),
                waiting: false,
            });
        }
        if let Some(tx) = self.answer.take() {
            let _ = tx.send(answer);
        }
        self.bus.do_send(Publish(GatewayEvent::ApprovalResolved {
            approval_id: self.row.id.clone(),
            run_id: self.row.run_id.clone(),
            tool_name: self.row.tool_name.clone(),
            status: status.to_string(),
            decided_by: by.clone(),
            reason: reason.clone(),
            allowed,
        }));
        self.row.status = status.into();
        self.row.decided_by = Some(by);
        self.row.decision_reason = reason;
        self.row.decided_at = Some(now_ms());
        ctx.stop();
        Ok(self.row.clone())
    }
}

impl Actor for ApprovalRequest {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Re-armed with what is left after a restart; already past: resolved at once.
        let left = Duration::from_millis((self.row.expires_at - now_ms()).max(0) as u64);
        ctx.run_later(left, |act, ctx| {
            let action = act.row.timeout_action.clone();
            let _ = act.resolve(
                "expired",
                "timeout".into(),
                Some(format!("timed out; action: {action}")),
                ctx,
            );
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.desk.do_send(Forget {
            id: self.row.id.clone(),
        });
    }
}

impl Handler<Resolve> for ApprovalRequest {
    type Result = Result<ApprovalRow, ()>;

    fn handle(&mut self, msg: Resolve, ctx: &mut Context<Self>) -> Self::Result {
        self.resolve(msg.status, msg.by, msg.reason, ctx)
    }
}

impl Handler<ListRules> for ApprovalDesk {
    type Result = MessageResult<ListRules>;

    fn handle(&mut self, _: ListRules, _: &mut Context<Self>) -> Self::Result {
        let mut out: Vec<EffectiveRule> = self
            .toolbox
            .tools()
            .iter()
            .map(|t| self.effective(&t.spec.name, t.risk))
            .collect();
        for (name, rule) in &self.rules {
            if self.toolbox.get(name).is_none() {
                out.push(EffectiveRule {
                    rule: rule.clone(),
                    source: "custom",
                });
            }
        }
        out.sort_by(|a, b| a.rule.tool_name.cmp(&b.rule.tool_name));
        MessageResult(out)
    }
}

impl Handler<UpsertRule> for ApprovalDesk {
    type Result = ResponseActFuture<Self, Result<EffectiveRule, ApprovalError>>;

    fn handle(&mut self, UpsertRule(rule): UpsertRule, _: &mut Context<Self>) -> Self::Result {
        let check = || -> Result<(), ApprovalError> {
            if self.toolbox.get(&rule.tool_name).is_none() {
                return Err(ApprovalError::NotFound(format!(
                    "toolName: no tool named {:?}; see GET /api/tools",
                    rule.tool_name
                )));
            }
            if parse_risk(&rule.risk_level).is_none() {
                return Err(ApprovalError::Invalid(
                    "riskLevel: low, medium, high or critical".into(),
                ));
            }
            if rule.risk_level == "critical" && !rule.require_approval {
                return Err(ApprovalError::Invalid(
                    "requireApproval: critical tools always need approval".into(),
                ));
            }
            if !(1..=86_400).contains(&rule.timeout_seconds) {
                return Err(ApprovalError::Invalid("timeoutSeconds: 1 to 86400".into()));
            }
            if rule.timeout_action != "approve" && rule.timeout_action != "reject" {
                return Err(ApprovalError::Invalid(
                    "timeoutAction: approve or reject".into(),
                ));
            }
            if let Some(c) = &rule.auto_approve {
                validate_conditions(c)?;
            }
            Ok(())
        };
        if let Err(e) = check() {
            return Box::pin(fut::ready(Err(e)));
        }
        let store = self.store.clone();
        let stored = rule.clone();
        Box::pin(
            async move { store.send(SaveRule(stored)).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    if let Err(e) = crate::store::answered(res) {
                        return Err(e.into());
                    }
                    let risk = act.tool_risk(&rule.tool_name);
                    act.rules.insert(rule.tool_name.clone(), rule.clone());
                    Ok(act.effective(&rule.tool_name, risk))
                }),
        )
    }
}

impl Handler<DeleteRule> for ApprovalDesk {
    type Result = ResponseActFuture<Self, Result<EffectiveRule, ApprovalError>>;

    fn handle(&mut self, msg: DeleteRule, _: &mut Context<Self>) -> Self::Result {
        if !self.rules.contains_key(&msg.tool_name) {
            return Box::pin(fut::ready(Err(ApprovalError::NotFound(format!(
                "no rule for {:?} (it uses the default)",
                msg.tool_name
            )))));
        }
        let store = self.store.clone();
        let name = msg.tool_name.clone();
        Box::pin(
            async move { store.send(DeleteRuleRow { tool_name: name }).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    if let Err(e) = crate::store::answered(res) {
                        return Err(e.into());
                    }
                    act.rules.remove(&msg.tool_name);
                    let risk = act.tool_risk(&msg.tool_name);
                    Ok(act.effective(&msg.tool_name, risk))
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn auto_approve_conditions_all_must_hold() {
        let c = json!({"inputEquals": {"method": "GET"}, "urlHostIn": ["api.example.com"]});
        assert!(auto_approved(
            &c,
            &json!({"method": "GET", "url": "https://API.example.com/x"})
        ));
        assert!(!auto_approved(
            &c,
            &json!({"method": "POST", "url": "https://api.example.com/x"})
        ));
        assert!(!auto_approved(
            &c,
            &json!({"method": "GET", "url": "https://evil.example/x"})
        ));
        assert!(!auto_approved(&json!({}), &json!({})));
        assert!(validate_conditions(&json!({"whenever": true})).is_err());
    }

    #[test]
    fn defaults_are_conservative() {
        assert!(!default_rule("t", RiskLevel::Medium).require_approval);
        assert!(default_rule("t", RiskLevel::High).require_approval);
        assert_eq!(default_rule("t", RiskLevel::Critical).timeout_seconds, 600);
        assert_eq!(default_rule("t", RiskLevel::High).timeout_action, "reject");
    }
}
