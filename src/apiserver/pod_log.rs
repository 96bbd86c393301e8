//! `GET pods/NAME/log`: the apiserver forwards the request to the kubelet of the pod's node
//! (`/containerLogs/NAMESPACE/POD/CONTAINER`, at the node's InternalIP and kubelet port) and
//! streams the answer back, so `kubectl logs` and `logs -f` work. Mirrors upstream's
//! `pkg/registry/core/pod/rest/log.go`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use futures::StreamExt;
use http::{Response, StatusCode, header};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};

use super::handlers::Body;
use super::registry::{Rest, Target};
use super::status::Error;

/// The query parameters a log request may carry, passed on to the kubelet.
const FORWARDED: &[&str] = &["follow", "tailLines", "timestamps", "previous", "sinceSeconds"];

/// Streams the log of `pod` (stored JSON) from its node's kubelet.
pub(crate) async fn proxy(
    pod: &[u8],
    nodes: Option<Arc<dyn Rest>>,
    query: &HashMap<String, String>,
) -> Result<Response<Body>, Error> {
    let pod: Pod =
        serde_json::from_slice(pod).map_err(|e| Error::Internal(format!("stored pod does not decode: {e}")))?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) => {
            if !spec
                .containers
                .iter()
                .chain(spec.init_containers.iter().flatten())
                .any(|x| &x.name == c)
            {
                return Err(Error::BadRequest(format!("container {c} is not valid for pod {name}")));
            }
            c.clone()
        }
        None => match spec.containers.as_slice() {
            [only] => only.name.clone(),
            many => {
                let names: Vec<&str> = many.iter().map(|c| c.name.as_str()).collect();
                return Err(Error::BadRequest(format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    names.join(" ")
                )));
            }
        },
    };
    let node_name = spec
        .node_name
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Error::BadRequest(format!("pod {name} is not scheduled to a node yet")))?;
    let nodes = nodes.ok_or(Error::NoRoute)?;
    let node: Node = serde_json::from_slice(&nodes.get(None, &node_name, Target::Main).await?)
        .map_err(|e| Error::Internal(format!("stored node does not decode: {e}")))?;
    let status = node.status.unwrap_or_default();
    let address = status
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
        .ok_or_else(|| Error::Unavailable(format!("node {node_name} reports no InternalIP")))?;
    let port = status
        .daemon_endpoints
        .and_then(|d| d.kubelet_endpoint)
        .map_or(10250, |e| e.port);
    let params: Vec<(&str, &str)> = query
        .iter()
        .filter(|(k, _)| FORWARDED.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let path = format!("/containerLogs/{namespace}/{name}/{container}?{query}");
    let unreachable = |e: &dyn std::error::Error| {
        Error::Unavailable(format!("the kubelet on node {node_name} cannot be reached: {e}"))
    };
    let host = if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    };
    let response = crate::http_get::get(&host, &path, &[])
        .await
        .map_err(|e| unreachable(&e))?;
    let code = response.status();
    if !code.is_success() {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let message = String::from_utf8_lossy(&body).into_owned();
        return Err(match code {
            StatusCode::NOT_FOUND => Error::NotFound {
                resource: super::status::ObjectRef {
                    qualified: "pods".into(),
                    group: String::new(),
                    plural: "pods".into(),
                },
                name,
            },
            StatusCode::BAD_REQUEST => Error::BadRequest(message),
            _ => Error::Internal(format!("the kubelet answered {code}: {message}")),
        });
    }
    let body = http_body_util::BodyStream::new(response.into_body())
        .filter_map(|frame| async move { frame.ok() })
        .map(Ok::<_, Infallible>);
    let mut resp = Response::new(BodyExt::boxed_unsync(http_body_util::StreamBody::new(body)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    Ok(resp)
}
