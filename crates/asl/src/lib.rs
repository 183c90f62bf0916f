//! Workflow coverage: which states, Choice branches and Catch handlers of a state machine
//! definition the recorded executions actually exercised.
//!
//! Pure logic over plain data ([`HistoryEvent`] mirrors the fields of Step Functions'
//! `GetExecutionHistory` events that matter here), so it is testable without the SDK. The CLI
//! (`batchless coverage`) fetches the histories and renders the [`Coverage`].
//!
//! How a history maps onto the definition:
//! - a state is *entered* when a `*StateEntered` event names it;
//! - every `*StateEntered` event is attributed to the state it came from by following
//!   `previousEventId` back to the owning state entry (falling back to the preceding event
//!   when a history carries no `previousEventId`), which keeps Parallel branches and Map
//!   iterations apart;
//! - a transition out of a Choice state is a *branch*: the rule is found by evaluating the
//!   Choice rules against the state's input (for the operators the ASL defines on JSONPath
//!   variables), else by the rule(s) whose `Next` is the target, else `Default`;
//! - a transition out of a state whose last activity was a failure (a `TaskFailed`-like event
//!   that no success or retry followed, or a failure inside a Parallel/Map branch that no inner
//!   catcher handled, or a `Fail` state inside a branch) into one of its catchers' `Next` is a
//!   *catch*: the first catcher whose `ErrorEquals` matches the error (`States.ALL` matches
//!   everything, `States.TaskFailed` everything but `States.Timeout`).

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One history event, reduced to what coverage and live rendering need.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEvent {
    pub id: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_event_id: Option<i64>,
    /// The event type, e.g. `TaskStateEntered`, `LambdaFunctionFailed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_millis: Option<i64>,
    /// The state name, for `*StateEntered` / `*StateExited` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

impl HistoryEvent {
    pub fn is_state_entered(&self) -> bool {
        self.kind.ends_with("StateEntered")
    }

    pub fn is_state_exited(&self) -> bool {
        self.kind.ends_with("StateExited")
    }

    /// The state type of an entered/exited event: `TaskStateEntered` → `Task`.
    pub fn state_type(&self) -> Option<&str> {
        self.kind
            .strip_suffix("StateEntered")
            .or_else(|| self.kind.strip_suffix("StateExited"))
    }

    /// A failure inside a state (not the execution's own end).
    pub fn is_state_failure(&self) -> bool {
        const FAILURES: [&str; 15] = [
            "TaskFailed",
            "TaskStartFailed",
            "TaskSubmitFailed",
            "TaskTimedOut",
            "LambdaFunctionFailed",
            "LambdaFunctionStartFailed",
            "LambdaFunctionScheduleFailed",
            "LambdaFunctionTimedOut",
            "ActivityFailed",
            "ActivityScheduleFailed",
            "ActivityTimedOut",
            "MapRunFailed",
            "MapIterationFailed",
            "ParallelStateFailed",
            "MapStateFailed",
        ];
        FAILURES.contains(&self.kind.as_str())
    }

    /// The error name of a failure event (`States.Timeout` for timeouts without one).
    pub fn failure_error(&self) -> Option<String> {
        match &self.error {
            Some(e) if !e.is_empty() => Some(e.clone()),
            _ if self.kind.ends_with("TimedOut") => Some("States.Timeout".to_string()),
            _ => None,
        }
    }

    /// Events that mean a state's work went on after a failure (success, or a retry).
    fn clears_failure(&self) -> bool {
        let k = self.kind.as_str();
        (k.ends_with("Succeeded") && k != "ExecutionSucceeded")
            || k.ends_with("Scheduled")
            || k.ends_with("Started") && k != "ExecutionStarted"
    }
}

/// Covered / total items of one kind, with every item's hit count.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tally {
    pub covered: usize,
    pub total: usize,
    /// Every item (definition order) with how many times it was taken.
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub hits: usize,
}

impl Tally {
    fn from_counts(ids: Vec<String>, counts: &HashMap<String, usize>) -> Tally {
        let items: Vec<Item> = ids
            .into_iter()
            .map(|id| Item {
                hits: counts.get(&id).copied().unwrap_or(0),
                id,
            })
            .collect();
        Tally {
            covered: items.iter().filter(|i| i.hits > 0).count(),
            total: items.len(),
            items,
        }
    }

    /// The items never taken, in definition order.
    pub fn missed(&self) -> Vec<&str> {
        self.items
            .iter()
            .filter(|i| i.hits == 0)
            .map(|i| i.id.as_str())
            .collect()
    }

    pub fn hits(&self, id: &str) -> Option<usize> {
        self.items.iter().find(|i| i.id == id).map(|i| i.hits)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coverage {
    pub executions: usize,
    pub states: Tally,
    pub choice_branches: Tally,
    pub catches: Tally,
    /// Attribution caveats (ambiguous branches, states not in the definition, ...).
    pub notes: Vec<String>,
}

impl Coverage {
    pub fn covered(&self) -> usize {
        self.states.covered + self.choice_branches.covered + self.catches.covered
    }

    pub fn total(&self) -> usize {
        self.states.total + self.choice_branches.total + self.catches.total
    }

    /// All items together, in percent (100 for an empty definition).
    pub fn percent(&self) -> f64 {
        percent(self.covered(), self.total())
    }
}

pub fn percent(covered: usize, total: usize) -> f64 {
    if total == 0 {
        100.0
    } else {
        covered as f64 * 100.0 / total as f64
    }
}

// ---------------------------------------------------------------------------------------------
// The definition

#[derive(Debug, Clone)]
struct Catcher {
    errors: Vec<String>,
    next: String,
}

#[derive(Debug, Clone)]
struct StateDef {
    name: String,
    kind: String,
    /// The Parallel/Map state whose branch holds this state.
    parent: Option<String>,
    next: Option<String>,
    choices: Vec<Value>,
    default: Option<String>,
    catchers: Vec<Catcher>,
    input_path: Option<String>,
    /// `Error` of a Fail state.
    fail_error: Option<String>,
}

impl StateDef {
    fn choice_next(rule: &Value) -> Option<&str> {
        rule.get("Next").and_then(Value::as_str)
    }

    fn branch_id(&self, rule: Option<usize>, target: &str) -> String {
        match rule {
            Some(i) => format!("{} -> {target} [rule {i}]", self.name),
            None => format!("{} -> {target} [Default]", self.name),
        }
    }

    fn catch_id(&self, i: usize) -> String {
        let c = &self.catchers[i];
        format!(
            "{} catch[{i}] ({}) -> {}",
            self.name,
            c.errors.join(", "),
            c.next
        )
    }
}

/// Every state of a definition, depth first (a Parallel/Map state before its branches).
fn collect_states(states: &Value, parent: Option<&str>, out: &mut Vec<StateDef>) {
    let Some(map) = states.as_object() else {
        return;
    };
    for (name, def) in map {
        let s = |k: &str| def.get(k).and_then(Value::as_str).map(str::to_string);
        let catchers = def
            .get("Catch")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| Catcher {
                        errors: c
                            .get("ErrorEquals")
                            .and_then(Value::as_array)
                            .map(|es| {
                                es.iter()
                                    .filter_map(Value::as_str)
                                    .map(str::to_string)
                                    .collect()
                            })
                            .unwrap_or_default(),
                        next: c
                            .get("Next")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(StateDef {
            name: name.clone(),
            kind: s("Type").unwrap_or_default(),
            parent: parent.map(str::to_string),
            next: s("Next"),
            choices: def
                .get("Choices")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            default: s("Default"),
            catchers,
            input_path: s("InputPath"),
            fail_error: s("Error"),
        });
        if let Some(branches) = def.get("Branches").and_then(Value::as_array) {
            for b in branches {
                collect_states(&b["States"], Some(name), out);
            }
        }
        for key in ["ItemProcessor", "Iterator"] {
            if let Some(p) = def.get(key) {
                collect_states(&p["States"], Some(name), out);
            }
        }
    }
}

/// Every state, depth first (a Parallel/Map state, then its branches' states), in `order`
/// when given (see [`state_order`]), else in the map order of the parsed definition.
fn ordered_states(definition: &Value, order: Option<&[String]>) -> Vec<StateDef> {
    let mut all = Vec::new();
    collect_states(&definition["States"], None, &mut all);
    if let Some(order) = order {
        let rank = |name: &str| order.iter().position(|n| n == name).unwrap_or(usize::MAX);
        all.sort_by_key(|s| rank(&s.name)); // stable: unknown names keep their place, last
    }
    all
}

/// The state names of a definition in the order its JSON text lists them, depth first.
/// (`serde_json::Value` keeps object order only with its `preserve_order` feature, which
/// builds of this crate may or may not have.)
pub fn state_order(text: &str) -> Result<Vec<String>, serde_json::Error> {
    use serde::de::DeserializeSeed;
    let mut out = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    order::Scope(&mut out).deserialize(&mut de)?;
    de.end()?;
    Ok(out)
}

mod order {
    use std::fmt;

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    /// An object with `States` (the definition, a Parallel branch, a Map processor).
    pub struct Scope<'a>(pub &'a mut Vec<String>);
    struct States<'a>(&'a mut Vec<String>);
    struct State<'a>(&'a mut Vec<String>);
    struct Branches<'a>(&'a mut Vec<String>);

    /// A seed for one kind of node: its `DeserializeSeed` and the `Visitor` with the one
    /// `visit_*` method given (`what` is the node, for serde's "invalid type" message).
    macro_rules! seed {
        ($t:ident, $what:literal, $visit:ident<$access:ident>($this:ident, $a:ident) $body:block) => {
            impl<'de> DeserializeSeed<'de> for $t<'_> {
                type Value = ();
                fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                    d.deserialize_any(self)
                }
            }
            impl<'de> Visitor<'de> for $t<'_> {
                type Value = ();
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str($what)
                }
                fn $visit<A: $access<'de>>($this, mut $a: A) -> Result<(), A::Error> $body
            }
        };
    }

    seed!(Scope, "an object with States", visit_map<MapAccess>(self, map) {
        while let Some(key) = map.next_key::<String>()? {
            if key == "States" {
                map.next_value_seed(States(&mut *self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    });

    seed!(States, "an object of states", visit_map<MapAccess>(self, map) {
        while let Some(name) = map.next_key::<String>()? {
            self.0.push(name);
            map.next_value_seed(State(&mut *self.0))?;
        }
        Ok(())
    });

    seed!(State, "a state object", visit_map<MapAccess>(self, map) {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "Branches" => map.next_value_seed(Branches(&mut *self.0))?,
                "ItemProcessor" | "Iterator" => map.next_value_seed(Scope(&mut *self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    });

    seed!(Branches, "an array of branches", visit_seq<SeqAccess>(self, seq) {
        while seq.next_element_seed(Scope(&mut *self.0))?.is_some() {}
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Analysis

/// One entry into a state during an execution.
#[derive(Debug)]
struct Entry {
    state: String,
    input: Option<String>,
    /// The entry of the Parallel/Map state whose branch this entry runs in.
    container: Option<usize>,
    /// The error of the last failure in this state not followed by a success or retry.
    failure: Option<String>,
}

/// Coverage of `definition` by the executions whose histories are given. Items are listed in
/// the definition's map order; [`analyze_text`] lists them in the file's order.
pub fn analyze(definition: &Value, histories: &[Vec<HistoryEvent>]) -> Coverage {
    analyze_ordered(definition, histories, None)
}

/// [`analyze`] of a definition given as JSON text, items in the order the text lists them.
pub fn analyze_text(
    text: &str,
    histories: &[Vec<HistoryEvent>],
) -> Result<Coverage, serde_json::Error> {
    let definition: Value = serde_json::from_str(text)?;
    let order = state_order(text)?;
    Ok(analyze_ordered(&definition, histories, Some(&order)))
}

fn analyze_ordered(
    definition: &Value,
    histories: &[Vec<HistoryEvent>],
    order: Option<&[String]>,
) -> Coverage {
    let defs = ordered_states(definition, order);
    let by_name: HashMap<&str, &StateDef> = defs.iter().map(|d| (d.name.as_str(), d)).collect();

    let mut state_hits: HashMap<String, usize> = HashMap::new();
    let mut branch_hits: HashMap<String, usize> = HashMap::new();
    let mut catch_hits: HashMap<String, usize> = HashMap::new();
    let mut notes: BTreeSet<String> = BTreeSet::new();

    for history in histories {
        let mut events: Vec<&HistoryEvent> = history.iter().collect();
        events.sort_by_key(|e| e.id);
        let mut entries: Vec<Entry> = Vec::new();
        // event id → index of the state entry that owns it
        let mut owner: HashMap<i64, usize> = HashMap::new();
        let mut prev_in_list: Option<i64> = None;

        for ev in events {
            let prev = match ev.previous_event_id {
                Some(p) if p > 0 => Some(p),
                Some(_) => None,
                None => prev_in_list,
            };
            prev_in_list = Some(ev.id);
            let mut from = prev.and_then(|p| owner.get(&p).copied());
            // An exit names its state: own it by that state's latest entry.
            if let Some(name) = ev.name.as_deref().filter(|_| ev.is_state_exited()) {
                if let Some(i) = entries.iter().rposition(|e| e.state == name) {
                    from = Some(i);
                }
            }

            if ev.is_state_entered() {
                let name = ev.name.clone().unwrap_or_default();
                let Some(def) = by_name.get(name.as_str()) else {
                    notes.insert(format!(
                        "state {name:?} appears in a history but not in the definition"
                    ));
                    continue;
                };
                *state_hits.entry(name.clone()).or_default() += 1;
                // Leaving a branch (the event chain may end inside it): climb to the
                // entry in this state's own scope.
                while let Some(f) = from {
                    let f_parent = by_name
                        .get(entries[f].state.as_str())
                        .and_then(|d| d.parent.clone());
                    if f_parent == def.parent
                        || def.parent.as_deref() == Some(entries[f].state.as_str())
                    {
                        break;
                    }
                    match entries[f].container {
                        Some(c) => from = Some(c),
                        None => break,
                    }
                }
                // Which container does this entry run in?
                let container = match from {
                    Some(f) if def.parent.as_deref() == Some(entries[f].state.as_str()) => Some(f),
                    Some(f) => entries[f].container,
                    None => None,
                };
                let idx = entries.len();
                entries.push(Entry {
                    state: name.clone(),
                    input: ev.input.clone(),
                    container,
                    failure: None,
                });
                owner.insert(ev.id, idx);

                if def.kind == "Fail" {
                    if let Some(c) = container {
                        entries[c].failure = Some(
                            def.fail_error
                                .clone()
                                .unwrap_or_else(|| "States.ALL".into()),
                        );
                    }
                }

                // The transition from a sibling state in the same scope.
                if let Some(f) = from {
                    let Some(src) = by_name.get(entries[f].state.as_str()) else {
                        continue;
                    };
                    if src.parent != def.parent || def.parent.as_deref() == Some(&src.name) {
                        continue;
                    }
                    if src.kind == "Choice" {
                        record_branch(src, &entries[f], &name, &mut branch_hits, &mut notes);
                    }
                    if !src.catchers.is_empty() {
                        let failure = entries[f].failure.clone();
                        record_catch(src, failure.as_deref(), &name, &mut catch_hits, &mut notes);
                    }
                }
                continue;
            }

            let Some(o) = from else {
                continue;
            };
            owner.insert(ev.id, o);
            if ev.is_state_failure() {
                let error = ev.failure_error();
                let state = entries[o].state.clone();
                if error.is_none() && entries[o].failure.is_some() {
                    continue; // e.g. ParallelStateFailed after the inner failure
                }
                entries[o].failure = error.clone().or(Some(String::new()));
                // A failure no catcher of its own state handles fails the enclosing branch.
                let handled = by_name
                    .get(state.as_str())
                    .is_some_and(|d| first_matching_catcher(d, error.as_deref()).is_some());
                if !handled {
                    if let Some(c) = entries[o].container {
                        entries[c].failure = entries[o].failure.clone();
                    }
                }
            } else if ev.clears_failure() {
                entries[o].failure = None;
            }
        }
    }

    let state_ids = defs.iter().map(|d| d.name.clone()).collect();
    let mut branch_ids = Vec::new();
    let mut catch_ids = Vec::new();
    for d in &defs {
        if d.kind == "Choice" {
            for (i, rule) in d.choices.iter().enumerate() {
                let next = StateDef::choice_next(rule).unwrap_or("?");
                branch_ids.push(d.branch_id(Some(i), next));
            }
            if let Some(default) = &d.default {
                branch_ids.push(d.branch_id(None, default));
            }
        }
        for i in 0..d.catchers.len() {
            catch_ids.push(d.catch_id(i));
        }
    }

    Coverage {
        executions: histories.len(),
        states: Tally::from_counts(state_ids, &state_hits),
        choice_branches: Tally::from_counts(branch_ids, &branch_hits),
        catches: Tally::from_counts(catch_ids, &catch_hits),
        notes: notes.into_iter().collect(),
    }
}

fn record_branch(
    choice: &StateDef,
    entry: &Entry,
    target: &str,
    hits: &mut HashMap<String, usize>,
    notes: &mut BTreeSet<String>,
) {
    let rules_to_target: Vec<usize> = choice
        .choices
        .iter()
        .enumerate()
        .filter(|(_, r)| StateDef::choice_next(r) == Some(target))
        .map(|(i, _)| i)
        .collect();
    let default_to_target = choice.default.as_deref() == Some(target);
    if rules_to_target.is_empty() && !default_to_target {
        notes.insert(format!(
            "{} went to {target}, which none of its rules names (definition changed?)",
            choice.name
        ));
        return;
    }
    // Best: evaluate the rules against the input the Choice saw.
    let evaluated = entry
        .input
        .as_deref()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|input| {
            let input = match choice.input_path.as_deref() {
                None => input,
                Some(p) => select(&input, p)?.clone(),
            };
            evaluate_choices(&choice.choices, &input)
        });
    let chosen: Vec<Option<usize>> = match evaluated {
        Some(Some(i)) if rules_to_target.contains(&i) => vec![Some(i)],
        Some(None) if default_to_target => vec![None],
        _ => match (rules_to_target.as_slice(), default_to_target) {
            ([i], false) => vec![Some(*i)],
            ([], true) => vec![None],
            (rules, default) => {
                let mut all: Vec<Option<usize>> = rules.iter().map(|i| Some(*i)).collect();
                if default {
                    all.push(None);
                }
                notes.insert(format!(
                    "{} -> {target}: several branches lead there and the rules could not be \
                     evaluated on the recorded input; counted for all of them",
                    choice.name
                ));
                all
            }
        },
    };
    for rule in chosen {
        *hits.entry(choice.branch_id(rule, target)).or_default() += 1;
    }
}

fn record_catch(
    state: &StateDef,
    failure: Option<&str>,
    target: &str,
    hits: &mut HashMap<String, usize>,
    notes: &mut BTreeSet<String>,
) {
    let catcher = match failure {
        Some(error) => {
            let error = (!error.is_empty()).then_some(error);
            match first_matching_catcher(state, error) {
                Some(i) if state.catchers[i].next == target => Some(i),
                _ => {
                    let by_next = state.catchers.iter().position(|c| c.next == target);
                    if by_next.is_some() {
                        notes.insert(format!(
                            "{}: error {} went to {target} though no catcher for it leads \
                             there; counted for the first catcher that does",
                            state.name,
                            error.unwrap_or("(unnamed)")
                        ));
                    }
                    by_next
                }
            }
        }
        None => {
            // No failure seen: a normal transition, unless the target is reachable only
            // through a catcher (a failure the history does not show in a known form).
            if state.next.as_deref() == Some(target) || state.kind == "Choice" {
                None
            } else {
                let by_next = state.catchers.iter().position(|c| c.next == target);
                if by_next.is_some() {
                    notes.insert(format!(
                        "{} -> {target}: no failure event seen; counted as its catcher",
                        state.name
                    ));
                }
                by_next
            }
        }
    };
    if let Some(i) = catcher {
        *hits.entry(state.catch_id(i)).or_default() += 1;
    }
}

/// The first catcher of `state` whose `ErrorEquals` matches `error`.
fn first_matching_catcher(state: &StateDef, error: Option<&str>) -> Option<usize> {
    state
        .catchers
        .iter()
        .position(|c| c.errors.iter().any(|e| error_matches(e, error)))
}

fn error_matches(pattern: &str, error: Option<&str>) -> bool {
    match (pattern, error) {
        ("States.ALL", _) => true,
        ("States.TaskFailed", Some(e)) => e != "States.Timeout",
        ("States.TaskFailed", None) => true,
        (p, Some(e)) => p == e,
        (_, None) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Choice rule evaluation (JSONPath variables; `Condition` rules of JSONata are not evaluated)

/// `Some(Some(i))`: rule `i` is the first to match; `Some(None)`: none matches (Default);
/// `None`: the rules cannot be evaluated here.
pub fn evaluate_choices(rules: &[Value], input: &Value) -> Option<Option<usize>> {
    for (i, rule) in rules.iter().enumerate() {
        if evaluate_rule(rule, input)? {
            return Some(Some(i));
        }
    }
    Some(None)
}

fn evaluate_rule(rule: &Value, input: &Value) -> Option<bool> {
    if let Some(all) = rule.get("And").and_then(Value::as_array) {
        for r in all {
            if !evaluate_rule(r, input)? {
                return Some(false);
            }
        }
        return Some(true);
    }
    if let Some(any) = rule.get("Or").and_then(Value::as_array) {
        for r in any {
            if evaluate_rule(r, input)? {
                return Some(true);
            }
        }
        return Some(false);
    }
    if let Some(not) = rule.get("Not") {
        return evaluate_rule(not, input).map(|b| !b);
    }
    let variable = rule.get("Variable")?.as_str()?;
    let value = if variable.starts_with("$$") {
        return None; // the context object is not recorded in the history
    } else {
        select(input, variable)
    };
    let obj = rule.as_object()?;
    let (op, operand) = obj
        .iter()
        .find(|(k, _)| !matches!(k.as_str(), "Variable" | "Next" | "Comment"))?;
    let (op, operand) = match op.strip_suffix("Path") {
        Some(base) if op != "IsPresent" => (base, select(input, operand.as_str()?)?),
        _ => (op.as_str(), operand),
    };
    match op {
        "IsPresent" => return Some(value.is_some() == operand.as_bool()?),
        "IsNull" => return Some(value?.is_null() == operand.as_bool()?),
        "IsString" => return Some(value?.is_string() == operand.as_bool()?),
        "IsNumeric" => return Some(value?.is_number() == operand.as_bool()?),
        "IsBoolean" => return Some(value?.is_boolean() == operand.as_bool()?),
        "IsTimestamp" => {
            let is = value?.as_str().and_then(timestamp).is_some();
            return Some(is == operand.as_bool()?);
        }
        _ => {}
    }
    let value = value?;
    use std::cmp::Ordering::*;
    let cmp = |ord: Option<std::cmp::Ordering>, suffix: &str| -> Option<bool> {
        let Some(ord) = ord else {
            return Some(false); // type mismatch: the comparison is false
        };
        Some(match suffix {
            "Equals" => ord == Equal,
            "LessThan" => ord == Less,
            "GreaterThan" => ord == Greater,
            "LessThanEquals" => ord != Greater,
            "GreaterThanEquals" => ord != Less,
            _ => return None,
        })
    };
    if let Some(suffix) = op.strip_prefix("String") {
        if suffix == "Matches" {
            return Some(
                value
                    .as_str()
                    .is_some_and(|v| wildcard(operand.as_str().unwrap_or(""), v)),
            );
        }
        let ord = match (value.as_str(), operand.as_str()) {
            (Some(a), Some(b)) => Some(a.cmp(b)),
            _ => None,
        };
        return cmp(ord, suffix);
    }
    if let Some(suffix) = op.strip_prefix("Numeric") {
        let ord = match (value.as_f64(), operand.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b),
            _ => None,
        };
        return cmp(ord, suffix);
    }
    if let Some(suffix) = op.strip_prefix("Timestamp") {
        let ord = match (
            value.as_str().and_then(timestamp),
            operand.as_str().and_then(timestamp),
        ) {
            (Some(a), Some(b)) => Some(a.cmp(&b)),
            _ => None,
        };
        return cmp(ord, suffix);
    }
    if op == "BooleanEquals" {
        return Some(value.as_bool().is_some() && value.as_bool() == operand.as_bool());
    }
    None
}

fn timestamp(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// ASL `StringMatches`: `*` matches any run of characters, `\*` and `\\` are literal.
fn wildcard(pattern: &str, s: &str) -> bool {
    #[derive(PartialEq)]
    enum Tok {
        Star,
        Ch(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => toks.push(Tok::Ch(chars.next().unwrap_or('\\'))),
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Ch(c)),
        }
    }
    let s: Vec<char> = s.chars().collect();
    // dp[j]: pattern prefix matches s[..j]
    let mut dp = vec![false; s.len() + 1];
    dp[0] = true;
    for t in &toks {
        let mut next = vec![false; s.len() + 1];
        match t {
            Tok::Star => {
                let mut any = false;
                for j in 0..=s.len() {
                    any |= dp[j];
                    next[j] = any;
                }
            }
            Tok::Ch(c) => {
                for j in 1..=s.len() {
                    next[j] = dp[j - 1] && s[j - 1] == *c;
                }
            }
        }
        dp = next;
    }
    dp[s.len()]
}

/// A reference path (`$`, `$.a.b`, `$.a[0]`, `$['a b']`) into `value`; `None` if absent or
/// not a simple path.
pub fn select<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut rest = path.strip_prefix('$')?;
    let mut cur = value;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            if key.is_empty() || key == "*" {
                return None;
            }
            cur = cur.get(key)?;
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            if let Some(q) = inner
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
            {
                cur = cur.get(q)?;
            } else {
                cur = cur.get(inner.parse::<usize>().ok()?)?;
            }
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// State order follows the map order of `serde_json` (file order with `preserve_order`).
    fn sorted(mut v: Vec<&str>) -> Vec<&str> {
        v.sort_unstable();
        v
    }

    /// Each `(item, hits)` is in `tally` and was taken exactly that many times.
    fn assert_hits(tally: &Tally, expected: &[(&str, usize)]) {
        for &(id, n) in expected {
            assert_eq!(tally.hits(id), Some(n), "{id}: {:?}", tally.items);
        }
    }

    fn definition() -> Value {
        json!({
            "StartAt": "Validate",
            "States": {
                "Validate": {
                    "Type": "Task", "Resource": "${ValidateFn}", "Next": "Run",
                    "Catch": [{"ErrorEquals": ["InvalidInput"], "Next": "Rejected"}]
                },
                "Run": {
                    "Type": "Task", "Resource": "${RunFn}", "Next": "Outcome?",
                    "Retry": [{"ErrorEquals": ["Throttled"], "MaxAttempts": 2}],
                    "Catch": [
                        {"ErrorEquals": ["BuildFailed"], "ResultPath": "$.error", "Next": "Record"},
                        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Record"}
                    ]
                },
                "Outcome?": {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$.error", "IsPresent": true, "Next": "Record"},
                        {"And": [
                            {"Variable": "$.build.status", "StringEquals": "SUCCEEDED"},
                            {"Variable": "$.build.seconds", "NumericLessThan": 600}
                        ], "Next": "Done"},
                        {"Variable": "$.build.status", "StringEquals": "SUCCEEDED", "Next": "Slow"}
                    ],
                    "Default": "Record"
                },
                "Slow": {"Type": "Pass", "Next": "Done"},
                "Record": {"Type": "Pass", "Next": "Done"},
                "Rejected": {"Type": "Fail", "Error": "InvalidInput"},
                "Done": {"Type": "Succeed"}
            }
        })
    }

    /// A history builder: events chain through `previousEventId` like Step Functions'.
    struct H {
        events: Vec<HistoryEvent>,
    }

    impl H {
        fn new() -> H {
            H {
                events: vec![HistoryEvent {
                    id: 1,
                    previous_event_id: Some(0),
                    kind: "ExecutionStarted".into(),
                    ..Default::default()
                }],
            }
        }
        fn push(mut self, kind: &str, f: impl FnOnce(&mut HistoryEvent)) -> H {
            let id = self.events.len() as i64 + 1;
            let mut e = HistoryEvent {
                id,
                previous_event_id: Some(id - 1),
                kind: kind.into(),
                ..Default::default()
            };
            f(&mut e);
            self.events.push(e);
            self
        }
        fn enter(self, ty: &str, name: &str, input: Value) -> H {
            self.push(&format!("{ty}StateEntered"), |e| {
                e.name = Some(name.into());
                e.input = Some(input.to_string());
            })
        }
        fn exit(self, ty: &str, name: &str) -> H {
            self.push(&format!("{ty}StateExited"), |e| e.name = Some(name.into()))
        }
        fn task_ok(self, name: &str, input: Value) -> H {
            self.enter("Task", name, input)
                .push("LambdaFunctionScheduled", |_| {})
                .push("LambdaFunctionStarted", |_| {})
                .push("LambdaFunctionSucceeded", |_| {})
                .exit("Task", name)
        }
        fn task_fail(self, name: &str, input: Value, error: &str) -> H {
            self.enter("Task", name, input)
                .push("LambdaFunctionScheduled", |_| {})
                .push("LambdaFunctionStarted", |_| {})
                .push("LambdaFunctionFailed", |e| {
                    e.error = Some(error.into());
                    e.cause = Some("{\"errorMessage\":\"boom\"}".into());
                })
        }
        fn done(self) -> Vec<HistoryEvent> {
            self.events
        }
    }

    fn succeeded_run(seconds: u64) -> Vec<HistoryEvent> {
        let out = json!({"build": {"status": "SUCCEEDED", "seconds": seconds}});
        H::new()
            .task_ok("Validate", json!({}))
            .task_ok("Run", json!({}))
            .enter("Choice", "Outcome?", out.clone())
            .exit("Choice", "Outcome?")
            .enter(
                if seconds < 600 { "Succeed" } else { "Pass" },
                if seconds < 600 { "Done" } else { "Slow" },
                out,
            )
            .done()
    }

    #[test]
    fn a_single_success_leaves_other_branches_and_catches_as_gaps() {
        let cov = analyze(&definition(), &[succeeded_run(30)]);
        assert_eq!(cov.executions, 1);
        assert_eq!((cov.states.covered, cov.states.total), (4, 7));
        assert_eq!(
            sorted(cov.states.missed()),
            vec!["Record", "Rejected", "Slow"],
            "unreached states, in walk order: {:?}",
            cov.states.items
        );
        assert_eq!(cov.choice_branches.total, 4);
        assert_hits(&cov.choice_branches, &[("Outcome? -> Done [rule 1]", 1)]);
        assert_eq!(
            cov.choice_branches.missed(),
            vec![
                "Outcome? -> Record [rule 0]",
                "Outcome? -> Slow [rule 2]",
                "Outcome? -> Record [Default]"
            ]
        );
        assert_eq!((cov.catches.covered, cov.catches.total), (0, 3));
        assert!(cov
            .catches
            .missed()
            .contains(&"Run catch[1] (States.ALL) -> Record"));
        assert!(cov.notes.is_empty(), "{:?}", cov.notes);
    }

    #[test]
    fn a_caught_failure_counts_the_first_matching_catcher() {
        let caught = H::new()
            .task_ok("Validate", json!({}))
            .task_fail("Run", json!({}), "BuildFailed")
            .enter("Pass", "Record", json!({"error": {}}))
            .done();
        let other = H::new()
            .task_ok("Validate", json!({}))
            .task_fail("Run", json!({}), "States.Runtime")
            .enter("Pass", "Record", json!({"error": {}}))
            .done();
        let cov = analyze(&definition(), &[caught.clone(), caught, other]);
        assert_hits(
            &cov.catches,
            &[
                ("Run catch[0] (BuildFailed) -> Record", 2),
                ("Run catch[1] (States.ALL) -> Record", 1),
            ],
        );
        assert_eq!(
            cov.catches.missed(),
            vec!["Validate catch[0] (InvalidInput) -> Rejected"]
        );
        // The catch is not a Choice branch.
        assert_eq!(cov.choice_branches.covered, 0);
    }

    #[test]
    fn a_retried_failure_that_then_succeeds_is_not_a_catch() {
        let out = json!({"build": {"status": "SUCCEEDED", "seconds": 900}});
        let h = H::new()
            .task_ok("Validate", json!({}))
            .task_fail("Run", json!({}), "Throttled")
            .push("LambdaFunctionScheduled", |_| {})
            .push("LambdaFunctionStarted", |_| {})
            .push("LambdaFunctionSucceeded", |_| {})
            .exit("Task", "Run")
            .enter("Choice", "Outcome?", out.clone())
            .exit("Choice", "Outcome?")
            .enter("Pass", "Slow", out)
            .done();
        let cov = analyze(&definition(), &[h]);
        assert_eq!(cov.catches.covered, 0);
        // Rule 1 fails (900 >= 600), rule 2 matches: evaluated, not guessed.
        assert_hits(&cov.choice_branches, &[("Outcome? -> Slow [rule 2]", 1)]);
    }

    #[test]
    fn rules_sharing_a_target_are_told_apart_by_evaluating_the_input() {
        let h = |input: Value| {
            H::new()
                .task_ok("Validate", json!({}))
                .task_ok("Run", json!({}))
                .enter("Choice", "Outcome?", input.clone())
                .exit("Choice", "Outcome?")
                .enter("Pass", "Record", input)
                .done()
        };
        let errored = h(json!({"error": {"Error": "X"}}));
        let unknown = h(json!({"build": {"status": "FAILED"}}));
        let cov = analyze(&definition(), &[errored, unknown]);
        assert_hits(
            &cov.choice_branches,
            &[
                ("Outcome? -> Record [rule 0]", 1),
                ("Outcome? -> Record [Default]", 1),
            ],
        );
        assert!(cov.notes.is_empty(), "{:?}", cov.notes);

        // Without a recorded input, both candidates are counted, with a note.
        let mut blind = h(json!({}));
        for e in &mut blind {
            e.input = None;
        }
        let cov = analyze(&definition(), &[blind]);
        assert_hits(
            &cov.choice_branches,
            &[
                ("Outcome? -> Record [rule 0]", 1),
                ("Outcome? -> Record [Default]", 1),
            ],
        );
        assert_eq!(cov.notes.len(), 1);
    }

    #[test]
    fn histories_without_previous_ids_fall_back_to_event_order() {
        let mut h = succeeded_run(30);
        for e in &mut h {
            e.previous_event_id = None;
        }
        let cov = analyze(&definition(), &[h]);
        assert_hits(&cov.choice_branches, &[("Outcome? -> Done [rule 1]", 1)]);
        assert_eq!(cov.states.covered, 4);
    }

    #[test]
    fn a_failed_validation_caught_into_a_fail_state() {
        let h = H::new()
            .task_fail("Validate", json!({}), "InvalidInput")
            .enter("Fail", "Rejected", json!({}))
            .push("ExecutionFailed", |e| e.error = Some("InvalidInput".into()))
            .done();
        let cov = analyze(&definition(), &[h]);
        assert_hits(
            &cov.catches,
            &[("Validate catch[0] (InvalidInput) -> Rejected", 1)],
        );
        assert_hits(&cov.states, &[("Rejected", 1), ("Run", 0)]);
    }

    fn parallel_definition() -> Value {
        json!({
            "StartAt": "Both",
            "States": {
                "Both": {
                    "Type": "Parallel",
                    "Branches": [
                        {"StartAt": "A", "States": {
                            "A": {"Type": "Task", "Resource": "x", "End": true,
                                  "Catch": [{"ErrorEquals": ["Minor"], "Next": "AFixed"}]},
                            "AFixed": {"Type": "Pass", "End": true}
                        }},
                        {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}
                    ],
                    "Next": "Ok",
                    "Catch": [
                        {"ErrorEquals": ["States.Timeout"], "Next": "TimedOut"},
                        {"ErrorEquals": ["States.ALL"], "Next": "Broken"}
                    ]
                },
                "Ok": {"Type": "Succeed"},
                "TimedOut": {"Type": "Fail"},
                "Broken": {"Type": "Fail"}
            }
        })
    }

    #[test]
    fn states_in_parallel_branches_and_the_parallel_catch() {
        // Branch events interleave; previousEventId keeps them apart.
        let ev = |id: i64, prev: i64, kind: &str, name: Option<&str>| HistoryEvent {
            id,
            previous_event_id: Some(prev),
            kind: kind.into(),
            name: name.map(str::to_string),
            ..Default::default()
        };
        let mut h = vec![
            ev(1, 0, "ExecutionStarted", None),
            ev(2, 1, "ParallelStateEntered", Some("Both")),
            ev(3, 2, "ParallelStateStarted", None),
            ev(4, 3, "TaskStateEntered", Some("A")),
            ev(5, 3, "PassStateEntered", Some("B")),
            ev(6, 4, "TaskScheduled", None),
            ev(7, 5, "PassStateExited", Some("B")),
            ev(8, 6, "TaskTimedOut", None),
            ev(9, 8, "ParallelStateFailed", None),
            ev(10, 9, "FailStateEntered", Some("TimedOut")),
        ];
        let cov = analyze(&parallel_definition(), std::slice::from_ref(&h));
        assert_eq!(cov.states.total, 7);
        assert_eq!(sorted(cov.states.missed()), vec!["AFixed", "Broken", "Ok"]);
        assert_hits(
            &cov.catches,
            &[
                ("Both catch[0] (States.Timeout) -> TimedOut", 1),
                ("A catch[0] (Minor) -> AFixed", 0),
            ],
        );

        // The inner catcher handles "Minor": the Parallel itself catches nothing.
        h.truncate(6);
        h.push(ev(7, 6, "TaskFailed", None));
        h[6].error = Some("Minor".into());
        h.push(ev(8, 7, "PassStateEntered", Some("AFixed")));
        h.push(ev(9, 8, "PassStateExited", Some("AFixed")));
        h.push(ev(10, 5, "PassStateExited", Some("B")));
        h.push(ev(11, 10, "ParallelStateExited", Some("Both")));
        h.push(ev(12, 11, "SucceedStateEntered", Some("Ok")));
        let cov = analyze(&parallel_definition(), &[h]);
        assert_hits(&cov.catches, &[("A catch[0] (Minor) -> AFixed", 1)]);
        assert_eq!(cov.catches.covered, 1);
        assert_eq!(sorted(cov.states.missed()), vec!["Broken", "TimedOut"]);
    }

    #[test]
    fn items_follow_the_order_of_the_text() {
        let text = r#"{"Comment": "x", "StartAt": "Zeta", "States": {
            "Zeta": {"Type": "Parallel", "Next": "Alpha", "Branches": [
                {"StartAt": "Yankee", "States": {"Yankee": {"Type": "Pass", "End": true},
                                                  "Bravo": {"Type": "Map", "End": true,
                                                            "ItemProcessor": {"StartAt": "Xray", "States": {"Xray": {"Type": "Pass", "End": true}}}}}}
            ]},
            "Alpha": {"Type": "Choice", "Choices": [{"Variable": "$.a", "IsPresent": true, "Next": "Mike"}], "Default": "Charlie"},
            "Mike": {"Type": "Succeed"},
            "Charlie": {"Type": "Fail"}
        }}"#;
        let order = state_order(text).unwrap();
        assert_eq!(
            order,
            ["Zeta", "Yankee", "Bravo", "Xray", "Alpha", "Mike", "Charlie"]
        );
        let cov = analyze_text(text, &[]).unwrap();
        let ids: Vec<&str> = cov.states.items.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, order);
        assert!(state_order("[1]").is_err());
        assert!(analyze_text("{", &[]).is_err());
    }

    #[test]
    fn unknown_states_are_noted_not_counted() {
        let h = H::new().enter("Task", "Ghost", json!({})).done();
        let cov = analyze(&definition(), &[h]);
        assert_eq!(cov.states.covered, 0);
        assert!(cov.notes[0].contains("Ghost"));
    }

    #[test]
    fn rule_evaluation() {
        let input = json!({"a": {"b": [1, "x"]}, "s": "release-42", "t": "2026-11-28T13:00:00Z", "f": false});
        let cases = [
            (
                json!({"Variable": "$.a.b[0]", "NumericGreaterThanEquals": 1}),
                Some(true),
            ),
            (
                json!({"Variable": "$.a.b[1]", "NumericEquals": 1}),
                Some(false),
            ),
            (
                json!({"Variable": "$.s", "StringMatches": "release-*"}),
                Some(true),
            ),
            (
                json!({"Variable": "$.s", "StringMatches": "rel\\*"}),
                Some(false),
            ),
            (
                json!({"Variable": "$.f", "BooleanEquals": false}),
                Some(true),
            ),
            (
                json!({"Variable": "$.nope", "IsPresent": false}),
                Some(true),
            ),
            (
                json!({"Not": {"Variable": "$['s']", "StringEquals": "x"}}),
                Some(true),
            ),
            (
                json!({"Variable": "$.t", "TimestampLessThan": "2026-11-28T14:00:00+00:00"}),
                Some(true),
            ),
            (
                json!({"Variable": "$.s", "StringEqualsPath": "$.s"}),
                Some(true),
            ),
            // Missing variables and the context object cannot be evaluated.
            (json!({"Variable": "$.nope", "StringEquals": "x"}), None),
            (
                json!({"Variable": "$$.Execution.Id", "IsPresent": true}),
                None,
            ),
        ];
        for (rule, want) in cases {
            assert_eq!(evaluate_rule(&rule, &input), want, "{rule}");
        }
        assert_eq!(
            evaluate_choices(
                &[json!({"Variable": "$.f", "BooleanEquals": true, "Next": "X"})],
                &input
            ),
            Some(None)
        );
    }

    #[test]
    fn history_events_deserialize_from_camel_case() {
        let e: HistoryEvent = serde_json::from_value(json!({
            "id": 3, "previousEventId": 2, "type": "TaskTimedOut", "timestampMillis": 5
        }))
        .unwrap();
        assert!(e.is_state_failure());
        assert_eq!(e.failure_error().as_deref(), Some("States.Timeout"));
    }
}
