//! Public API requests: arbitrary bytes decoded as the server's protobuf
//! messages, then the conversions and checks a handler runs before any work.
//! The first byte chooses the message.
#![no_main]
use libfuzzer_sys::fuzz_target;
use prost::Message;
use rulake_api::fuzz;
use rulake_proto::v1 as pb;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 5 {
        0 => {
            if let Ok(m) = pb::CreateCollectionRequest::decode(bytes) {
                if let Some(spec) = m.spec {
                    let _ = fuzz::create_collection(spec);
                }
            }
        }
        1 => {
            if let Ok(m) = pb::SearchRequest::decode(bytes) {
                let _ = fuzz::search(m);
            }
        }
        2 => {
            if let Ok(m) = pb::BatchSearchRequest::decode(bytes) {
                for q in m.queries {
                    let _ = fuzz::search(pb::SearchRequest {
                        collection: m.collection.clone(),
                        query: Some(q),
                        params: m.params.clone(),
                    });
                }
            }
        }
        3 => {
            if let Ok(m) = pb::IngestRequest::decode(bytes) {
                if let Some(pb::ingest_request::Message::Batch(b)) = m.message {
                    let ids = b.records.into_iter().filter_map(|r| r.id).collect();
                    let _ = fuzz::ids(ids);
                }
            }
        }
        _ => {
            if let Ok(m) = pb::DeleteRequest::decode(bytes) {
                let _ = fuzz::ids(m.ids);
            }
        }
    }
});
