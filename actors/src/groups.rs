//! `AgentGroups`: agents with their own persona, model, key, tools and budget. The actor owns
//! the groups (cached, so resolving one for a run costs no query); the API key is kept
//! encrypted at rest and in no response; budgets are handed to the `Budgets` actor.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use agent_runner::{LlmClient, LlmConfig, Provider, ToolBox};
use serde::Serialize;

use crate::budgets::{Budgets, ForgetGroup, SetCaps};
use crate::secrets::SecretBox;
use crate::store::groups::{BindChannel, DeleteGroup as DeleteRow, GroupRow, SaveGroup};
use crate::store::{Store, StoreError};
use crate::time::{now_ms, rfc3339};

const SECRET_CONTEXT: &str = "agent_groups.api_key";

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("{0}")]
    Invalid(String),
    #[error("no agent group with id {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for GroupError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(m) => GroupError::Conflict(m),
            other => GroupError::Store(other),
        }
    }
}

/// A group as the API shows it: the key only as `hasApiKey` and its last four characters.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupView {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    pub model: Option<String>,
    pub provider: String,
    pub base_url: Option<String>,
    pub has_api_key: bool,
    pub api_key_last4: Option<String>,
    pub skills: Option<Vec<String>>,
    pub max_iterations: Option<u32>,
    pub budget_max_tokens_day: Option<u64>,
    pub budget_max_tokens_month: Option<u64>,
    pub container_isolation: bool,
    pub channels: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Fields of a create or update. Absent: unchanged (update) or default (create);
/// `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default)]
pub struct GroupFields {
    pub name: Option<String>,
    pub description: Option<Option<String>>,
    pub system_prompt: Option<Option<String>>,
    pub model: Option<Option<String>>,
    pub provider: Option<String>,
    pub base_url: Option<Option<String>>,
    pub api_key: Option<Option<String>>,
    pub skills: Option<Option<Vec<String>>>,
    pub max_iterations: Option<Option<u32>>,
    pub budget_max_tokens_day: Option<Option<u64>>,
    pub budget_max_tokens_month: Option<Option<u64>>,
    pub container_isolation: Option<bool>,
}

/// What a run of a group uses instead of the defaults.
#[derive(Clone)]
pub struct RunSettings {
    pub group_id: String,
    pub llm: LlmClient,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub max_iterations: Option<u32>,
    pub toolbox: Arc<ToolBox>,
    pub budgeted: bool,
}

impl std::fmt::Debug for RunSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunSettings")
            .field("group_id", &self.group_id)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

#[derive(Message)]
#[rtype(result = "Result<GroupView, GroupError>")]
pub struct CreateGroup(pub GroupFields);

#[derive(Message)]
#[rtype(result = "Result<GroupView, GroupError>")]
pub struct UpdateGroup {
    pub id: String,
    pub fields: GroupFields,
}

/// Delete a group. With channels bound, refused unless `unbind` (then they are unbound).
#[derive(Message)]
#[rtype(result = "Result<(), GroupError>")]
pub struct DeleteGroup {
    pub id: String,
    pub unbind: bool,
}

#[derive(Message)]
#[rtype(result = "Vec<GroupView>")]
pub struct ListGroups;

#[derive(Message)]
#[rtype(result = "Option<GroupView>")]
pub struct GetGroup {
    pub id: String,
}

/// The settings a run of this group uses.
#[derive(Message)]
#[rtype(result = "Option<RunSettings>")]
pub struct ResolveGroup {
    pub id: String,
}

struct Group {
    row: GroupRow,
    api_key: Option<String>,
    channels: Vec<String>,
    settings: RunSettings,
}

pub struct AgentGroups {
    store: Store,
    budgets: Addr<Budgets>,
    secrets: SecretBox,
    /// The gateway's default model connection (timeouts, retries, key).
    base_llm: LlmConfig,
    toolbox: Arc<ToolBox>,
    groups: HashMap<String, Group>,
}

fn valid_model(m: &str) -> bool {
    (1..=100).contains(&m.len())
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/@".contains(c))
}

impl AgentGroups {
    pub fn new(
        store: Store,
        budgets: Addr<Budgets>,
        secrets: SecretBox,
        base_llm: LlmConfig,
        toolbox: Arc<ToolBox>,
        rows: Vec<GroupRow>,
        bindings: HashMap<String, String>,
    ) -> Result<Self, String> {
        let mut me = Self {
            store,
            budgets,
            secrets,
            base_llm,
            toolbox,
            groups: HashMap::new(),
        };
        for row in rows {
            let api_key = match &row.api_key_sealed {
                Some(sealed) => Some(
                    me.secrets
                        .open(SECRET_CONTEXT, sealed)
                        .map_err(|e| format!("agent group {}: {e}", row.name))?,
                ),
                None => None,
            };
            let group = me.build(row, api_key).map_err(|e| e.to_string())?;
            me.budgets.do_send(SetCaps {
                group_id: group.row.id.clone(),
                day: group.row.budget_max_tokens_day,
                month: group.row.budget_max_tokens_month,
            });
            me.groups.insert(group.row.id.clone(), group);
        }
        for (channel, group) in bindings {
            if let Some(g) = me.groups.get_mut(&group) {
                g.channels.push(channel);
            }
        }
        Ok(me)
    }

    fn build(&self, row: GroupRow, api_key: Option<String>) -> Result<Group, GroupError> {
        let mut config = self.base_llm.clone();
        if row.provider == "openai-compatible" {
            config.provider = Provider::OpenAiCompatible;
        } else {
            config.provider = Provider::Anthropic;
        }
        if let Some(url) = &row.base_url {
            config.base_url = url.trim_end_matches('/').to_string();
        }
        if api_key.is_some() {
            config.api_key = api_key.clone();
        }
        let llm = LlmClient::new(config).map_err(|e| GroupError::Invalid(e.to_string()))?;
        let toolbox = match &row.skills {
            Some(names) => Arc::new(self.toolbox.only(names)),
            None => self.toolbox.clone(),
        };
        let settings = RunSettings {
            group_id: row.id.clone(),
            llm,
            model: row.model.clone(),
            system_prompt: row.system_prompt.clone(),
            max_iterations: row.max_iterations,
            toolbox,
            budgeted: true,
        };
        Ok(Group {
            row,
            api_key,
            channels: Vec::new(),
            settings,
        })
    }

    fn view(g: &Group) -> GroupView {
        let r = &g.row;
        GroupView {
            id: r.id.clone(),
            name: r.name.clone(),
            description: r.description.clone(),
            system_prompt: r.system_prompt.clone(),
            model: r.model.clone(),
            provider: r.provider.clone(),
            base_url: r.base_url.clone(),
            has_api_key: g.api_key.is_some(),
            api_key_last4: r.api_key_hint.clone(),
            skills: r.skills.clone(),
            max_iterations: r.max_iterations,
            budget_max_tokens_day: r.budget_max_tokens_day,
            budget_max_tokens_month: r.budget_max_tokens_month,
            container_isolation: r.container_isolation,
            channels: g.channels.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }

    /// Apply `f` to `row` (checking every value), returning the new row and key.
    fn apply(
        &self,
        mut row: GroupRow,
        mut api_key: Option<String>,
        f: GroupFields,
    ) -> Result<(GroupRow, Option<String>), GroupError> {
        let bad = |m: &str| Err(GroupError::Invalid(m.to_string()));
        if let Some(name) = f.name {
            let name = name.trim().to_string();
            if name.is_empty() || name.len() > 100 {
                return bad("name: 1 to 100 characters");
            }
            row.name = name;
        }
        if let Some(d) = f.description {
            if d.as_ref().is_some_and(|d| d.len() > 2000) {
                return bad("description: at most 2000 characters");
            }
            row.description = d;
        }
        if let Some(p) = f.system_prompt {
            if p.as_ref().is_some_and(|p| p.len() > 100_000) {
                return bad("systemPrompt: at most 100000 characters");
            }
            row.system_prompt = p;
        }
        if let Some(m) = f.model {
            if m.as_deref().is_some_and(|m| !valid_model(m)) {
                return bad("model: 1 to 100 letters, digits or -_.:/@ (e.g. claude-sonnet-4-5)");
            }
            row.model = m;
        }
        if let Some(p) = f.provider {
            if p != "anthropic" && p != "openai-compatible" {
                return bad("provider: anthropic or openai-compatible");
            }
            row.provider = p;
        }
        if let Some(u) = f.base_url {
            if let Some(u) = &u {
                let ok = (u.starts_with("http://") || u.starts_with("https://"))
                    && u.parse::<awc::http::Uri>().is_ok()
                    && u.len() <= 2048;
                if !ok {
                    return bad("baseUrl: an http:// or https:// URL");
                }
            }
            row.base_url = u;
        }
        if let Some(k) = f.api_key {
            match k {
                Some(k) if k.trim().is_empty() || k.len() > 500 => {
                    return bad("apiKey: 1 to 500 characters, or null to clear it")
                }
                Some(k) => {
                    row.api_key_sealed = Some(self.secrets.seal(SECRET_CONTEXT, &k));
                    row.api_key_hint = Some(
                        k.chars()
                            .rev()
                            .take(4)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect(),
                    );
                    api_key = Some(k);
                }
                None => {
                    row.api_key_sealed = None;
                    row.api_key_hint = None;
                    api_key = None;
                }
            }
        }
        if let Some(skills) = f.skills {
            if let Some(names) = &skills {
                for n in names {
                    if self.toolbox.get(n).is_none() {
                        return Err(GroupError::Invalid(format!(
                            "skills: unknown tool {n:?}; see GET /api/tools"
                        )));
                    }
                }
            }
            row.skills = skills;
        }
        if let Some(n) = f.max_iterations {
            if n.is_some_and(|n| !(1..=100).contains(&n)) {
                return bad("maxIterations: 1 to 100");
            }
            row.max_iterations = n;
        }
        if let Some(d) = f.budget_max_tokens_day {
            if d == Some(0) {
                return bad("budgetMaxTokensDay: a positive number of tokens, or null for no cap");
            }
            row.budget_max_tokens_day = d;
        }
        if let Some(m) = f.budget_max_tokens_month {
            if m == Some(0) {
                return bad(
                    "budgetMaxTokensMonth: a positive number of tokens, or null for no cap",
                );
            }
            row.budget_max_tokens_month = m;
        }
        if let Some(c) = f.container_isolation {
            row.container_isolation = c;
        }
        row.updated_at = now_ms();
        Ok((row, api_key))
    }

    fn save(&mut self, group: Group) -> ResponseActFuture<Self, Result<GroupView, GroupError>> {
        let store = self.store.clone();
        let row = group.row.clone();
        Box::pin(
            async move { store.send(SaveGroup(row)).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    if let Err(e) = crate::store::answered(res) {
                        return Err(e.into());
                    }
                    act.budgets.do_send(SetCaps {
                        group_id: group.row.id.clone(),
                        day: group.row.budget_max_tokens_day,
                        month: group.row.budget_max_tokens_month,
                    });
                    let view = Self::view(&group);
                    act.groups.insert(group.row.id.clone(), group);
                    Ok(view)
                }),
        )
    }
}

impl Actor for AgentGroups {
    type Context = Context<Self>;
}

impl actix::Supervised for AgentGroups {}

impl Handler<CreateGroup> for AgentGroups {
    type Result = ResponseActFuture<Self, Result<GroupView, GroupError>>;

    fn handle(&mut self, CreateGroup(f): CreateGroup, _: &mut Context<Self>) -> Self::Result {
        if f.name.is_none() {
            return Box::pin(fut::ready(Err(GroupError::Invalid(
                "name is required".into(),
            ))));
        }
        let now = now_ms();
        let row = GroupRow {
            id: uuid::Uuid::new_v4().to_string(),
            provider: "anthropic".into(),
            created_at: now,
            updated_at: now,
            ..GroupRow::default()
        };
        match self
            .apply(row, None, f)
            .and_then(|(row, key)| self.build(row, key))
        {
            Ok(group) => self.save(group),
            Err(e) => Box::pin(fut::ready(Err(e))),
        }
    }
}

impl Handler<UpdateGroup> for AgentGroups {
    type Result = ResponseActFuture<Self, Result<GroupView, GroupError>>;

    fn handle(&mut self, msg: UpdateGroup, _: &mut Context<Self>) -> Self::Result {
        let Some(g) = self.groups.get(&msg.id) else {
            return Box::pin(fut::ready(Err(GroupError::NotFound(msg.id))));
        };
        let channels = g.channels.clone();
        match self
            .apply(g.row.clone(), g.api_key.clone(), msg.fields)
            .and_then(|(row, key)| self.build(row, key))
        {
            Ok(mut group) => {
                group.channels = channels;
                self.save(group)
            }
            Err(e) => Box::pin(fut::ready(Err(e))),
        }
    }
}

impl Handler<DeleteGroup> for AgentGroups {
    type Result = ResponseActFuture<Self, Result<(), GroupError>>;

    fn handle(&mut self, msg: DeleteGroup, _: &mut Context<Self>) -> Self::Result {
        let Some(g) = self.groups.get(&msg.id) else {
            return Box::pin(fut::ready(Err(GroupError::NotFound(msg.id))));
        };
        if !g.channels.is_empty() && !msg.unbind {
            return Box::pin(fut::ready(Err(GroupError::Conflict(format!(
                "the group has {} bound channel(s); unassign them or delete with ?unbind=true",
                g.channels.len()
            )))));
        }
        let store = self.store.clone();
        let id = msg.id.clone();
        Box::pin(
            async move { store.send(DeleteRow { id }).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    crate::store::answered(res)?;
                    act.groups.remove(&msg.id);
                    act.budgets.do_send(ForgetGroup { group_id: msg.id });
                    Ok(())
                }),
        )
    }
}

/// Bind a channel to a group (moving it from any other group): its runs use the group's
/// prompt, model, key, tools and budget.
#[derive(Message)]
#[rtype(result = "Result<GroupView, GroupError>")]
pub struct AssignChannel {
    pub group_id: String,
    pub channel_id: String,
    /// Move it when another group has it (else that is a conflict).
    pub move_existing: bool,
}

#[derive(Message)]
#[rtype(result = "Result<GroupView, GroupError>")]
pub struct UnassignChannel {
    pub group_id: String,
    pub channel_id: String,
}

/// The settings of the group a channel is bound to (`None`: the gateway's defaults).
#[derive(Message)]
#[rtype(result = "Option<RunSettings>")]
pub struct ResolveChannelGroup {
    pub channel_id: String,
}

/// A channel was deleted: forget its binding (the store already did).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ForgetChannel {
    pub channel_id: String,
}

impl Handler<AssignChannel> for AgentGroups {
    type Result = ResponseActFuture<Self, Result<GroupView, GroupError>>;

    fn handle(&mut self, msg: AssignChannel, _: &mut Context<Self>) -> Self::Result {
        if !self.groups.contains_key(&msg.group_id) {
            return Box::pin(fut::ready(Err(GroupError::NotFound(msg.group_id))));
        }
        let holder = self
            .groups
            .values()
            .find(|g| g.channels.contains(&msg.channel_id));
        if let Some(other) = holder.filter(|g| g.row.id != msg.group_id && !msg.move_existing) {
            return Box::pin(fut::ready(Err(GroupError::Conflict(format!(
                "the channel is bound to agent group {:?}; unassign it there first, or assign with ?move=true",
                other.row.name
            )))));
        }
        if holder.is_some_and(|g| g.row.id == msg.group_id) {
            // Already here: nothing to write.
            let view = Self::view(&self.groups[&msg.group_id]);
            return Box::pin(fut::ready(Ok(view)));
        }
        let write = self.store.send(BindChannel {
            channel_id: msg.channel_id.clone(),
            group_id: Some(msg.group_id.clone()),
        });
        Box::pin(
            async move { crate::store::answered(write.await) }
                .into_actor(self)
                .map(move |res, act, _| {
                    res?;
                    for g in act.groups.values_mut() {
                        g.channels.retain(|c| *c != msg.channel_id);
                    }
                    let g = act
                        .groups
                        .get_mut(&msg.group_id)
                        .ok_or_else(|| GroupError::NotFound(msg.group_id.clone()))?;
                    g.channels.push(msg.channel_id);
                    Ok(Self::view(g))
                }),
        )
    }
}

impl Handler<UnassignChannel> for AgentGroups {
    type Result = ResponseActFuture<Self, Result<GroupView, GroupError>>;

    fn handle(&mut self, msg: UnassignChannel, _: &mut Context<Self>) -> Self::Result {
        let Some(g) = self.groups.get(&msg.group_id) else {
            return Box::pin(fut::ready(Err(GroupError::NotFound(msg.group_id))));
        };
        if !g.channels.contains(&msg.channel_id) {
            return Box::pin(fut::ready(Err(GroupError::NotFound(format!(
                "channel {} is not bound to this group",
                msg.channel_id
            )))));
        }
        let write = self.store.send(BindChannel {
            channel_id: msg.channel_id.clone(),
            group_id: None,
        });
        Box::pin(
            async move { crate::store::answered(write.await) }
                .into_actor(self)
                .map(move |res, act, _| {
                    res?;
                    let g = act
                        .groups
                        .get_mut(&msg.group_id)
                        .ok_or_else(|| GroupError::NotFound(msg.group_id.clone()))?;
                    g.channels.retain(|c| *c != msg.channel_id);
                    Ok(Self::view(g))
                }),
        )
    }
}

impl Handler<ResolveChannelGroup> for AgentGroups {
    type Result = Option<RunSettings>;

    fn handle(&mut self, msg: ResolveChannelGroup, _: &mut Context<Self>) -> Self::Result {
        self.groups
            .values()
            .find(|g| g.channels.contains(&msg.channel_id))
            .map(|g| g.settings.clone())
    }
}

impl Handler<ForgetChannel> for AgentGroups {
    type Result = ();

    fn handle(&mut self, msg: ForgetChannel, _: &mut Context<Self>) {
        for g in self.groups.values_mut() {
            g.channels.retain(|c| *c != msg.channel_id);
        }
    }
}

impl Handler<ListGroups> for AgentGroups {
    type Result = MessageResult<ListGroups>;

    fn handle(&mut self, _: ListGroups, _: &mut Context<Self>) -> Self::Result {
        let mut all: Vec<&Group> = self.groups.values().collect();
        all.sort_by_key(|a| a.row.name.to_lowercase());
        MessageResult(all.into_iter().map(Self::view).collect())
    }
}

impl Handler<GetGroup> for AgentGroups {
    type Result = Option<GroupView>;

    fn handle(&mut self, msg: GetGroup, _: &mut Context<Self>) -> Self::Result {
        self.groups.get(&msg.id).map(Self::view)
    }
}

impl Handler<ResolveGroup> for AgentGroups {
    type Result = Option<RunSettings>;

    fn handle(&mut self, msg: ResolveGroup, _: &mut Context<Self>) -> Self::Result {
        self.groups.get(&msg.id).map(|g| g.settings.clone())
    }
}
