//! TEMPORARY stub: replaced by the helper's implementation.
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;
pub struct MemberSpec<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub topics: &'a BTreeSet<Uuid>,
    pub current: &'a Assignment,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignor { Uniform, Range }
impl Assignor {
    pub const DEFAULT: Assignor = Assignor::Uniform;
    pub fn by_name(name: &str) -> Option<Assignor> { match name { "uniform" => Some(Assignor::Uniform), "range" => Some(Assignor::Range), _ => None } }
    pub fn name(self) -> &'static str { match self { Assignor::Uniform => "uniform", Assignor::Range => "range" } }
    pub fn assign(self, members: &[MemberSpec], topics: &BTreeMap<Uuid, i32>) -> BTreeMap<String, Assignment> {
        let mut out: BTreeMap<String, Assignment> = members.iter().map(|m| (m.member_id.to_string(), Assignment::new())).collect();
        let mut sorted: Vec<&MemberSpec> = members.iter().collect();
        sorted.sort_by_key(|m| m.member_id);
        for (t, n) in topics {
            let subs: Vec<&&MemberSpec> = sorted.iter().filter(|m| m.topics.contains(t)).collect();
            if subs.is_empty() { continue; }
            for p in 0..(*n).max(0) {
                let m = subs[p as usize % subs.len()];
                out.get_mut(m.member_id).unwrap().entry(*t).or_default().insert(p);
            }
        }
        out
    }
}
