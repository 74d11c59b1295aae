//! DeleteTopics: by name (all versions) or by topic id (v6+).

use bytes::Bytes;
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::messages::{DeleteTopicsRequest, TopicName};

use super::{str, topic_name};
use crate::protocol::dispatch::Ctx;
use crate::protocol::errors::{self, NONE, UNKNOWN_TOPIC_ID};

pub fn handle(ctx: &Ctx, req: DeleteTopicsRequest) -> Bytes {
    let topics = &ctx.broker.topics;
    let mut resp = DeleteTopicsResponse::default();
    let mut targets: Vec<(Option<TopicName>, uuid::Uuid)> = req
        .topic_names
        .into_iter()
        .map(|n| (Some(n), uuid::Uuid::nil()))
        .collect();
    targets.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    for (name, id) in targets {
        let v6 = ctx.version >= 6;
        let mut r =
            DeletableTopicResult::default().with_topic_id(if v6 { id } else { uuid::Uuid::nil() });
        let name = match name {
            Some(n) => Some(n.0.to_string()),
            None => topics.get_by_id(&id).map(|t| t.name.clone()),
        };
        match name {
            None => r.error_code = UNKNOWN_TOPIC_ID,
            Some(n) => {
                r.name = Some(topic_name(&n));
                match ctx.broker.delete_topic(&n) {
                    Ok(id) => {
                        r.error_code = NONE;
                        if v6 {
                            r.topic_id = id;
                        }
                    }
                    Err(e) => {
                        r.error_code = errors::topic_error(&e);
                        if ctx.version >= 5 {
                            r.error_message = Some(str(&e.to_string()));
                        }
                    }
                }
            }
        }
        resp.responses.push(r);
    }
    ctx.encode(&resp)
}
