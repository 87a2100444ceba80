//! The addresses a Redis engine is given: a Cluster's credentials, given once, applied to
//! every node; passwords kept out of messages and `Debug` (docs/redis.md, "Security").

use crate::error::{Error, Result};

/// The Cluster's nodes, each with the credentials of the first node that has any (given once,
/// they apply to all). A node with other credentials is refused: one Cluster has one set.
pub(super) fn cluster_nodes(
    nodes: &[String],
    shown: &[String],
) -> Result<Vec<redis::ConnectionInfo>> {
    use redis::IntoConnectionInfo;
    let mut infos = Vec::with_capacity(nodes.len());
    for (node, shown) in nodes.iter().zip(shown) {
        let info = node
            .as_str()
            .into_connection_info()
            .map_err(|e| Error::InvalidInput(format!("Redis address {shown}: {e}")))?;
        infos.push(info);
    }
    let creds = |i: &redis::ConnectionInfo| {
        let r = i.redis_settings();
        (r.username().map(str::to_owned), r.password().map(str::to_owned))
    };
    let Some(first) = infos.iter().map(creds).find(|c| *c != (None, None)) else {
        return Ok(infos);
    };
    infos
        .into_iter()
        .zip(shown)
        .map(|(info, shown)| match creds(&info) {
            (None, None) => {
                let mut r = info.redis_settings().clone();
                if let Some(user) = &first.0 {
                    r = r.set_username(user);
                }
                if let Some(password) = &first.1 {
                    r = r.set_password(password);
                }
                Ok(info.set_redis_settings(r))
            }
            same if same == first => Ok(info),
            _ => Err(Error::InvalidInput(format!(
                "Cluster node {shown} has other credentials than the first: give them once \
                 (redis+cluster://user:password@host1:port1,host2:port2) or the same to every node"
            ))),
        })
        .collect()
}

/// `url` with its passwords replaced by `***` (the userinfo's, and a unix socket's `pass=`),
/// for messages and `Debug`.
pub(super) fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
    let nodes: Vec<String> = rest
        .split(',')
        .map(|node| match node.rsplit_once('@') {
            Some((info, host)) => match info.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("***@{host}"),
            },
            None => node.to_owned(),
        })
        .collect();
    let mut out =
        if scheme.is_empty() { nodes.join(",") } else { format!("{scheme}://{}", nodes.join(",")) };
    if let Some(at) = out.find("pass=") {
        let end = out[at..].find('&').map_or(out.len(), |n| at + n);
        out.replace_range(at + "pass=".len()..end, "***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{cluster_nodes, redacted};

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redacted("redis://ann:s3cret@h:1/0"), "redis://ann:***@h:1/0");
        assert_eq!(redacted("redis://:s3cret@h:1"), "redis://:***@h:1");
        assert_eq!(redacted("redis://s3cret@h:1"), "redis://***@h:1");
        assert_eq!(redacted("redis+cluster://:pw@a:1,b:2"), "redis+cluster://:***@a:1,b:2");
        assert_eq!(
            redacted("unix:///r.sock?user=a&pass=pw&db=1"),
            "unix:///r.sock?user=a&pass=***&db=1"
        );
        assert_eq!(redacted("redis://h:1"), "redis://h:1");
        assert_eq!(redacted("nonsense"), "nonsense");
    }

    #[test]
    fn a_clusters_credentials_given_once_apply_to_every_node() {
        let nodes: Vec<String> =
            ["redis://ann:pw@a:1", "redis://b:2", "redis://ann:pw@c:3"].map(str::to_owned).into();
        let infos = cluster_nodes(&nodes, &nodes).unwrap();
        for info in &infos {
            assert_eq!(info.redis_settings().username(), Some("ann"));
            assert_eq!(info.redis_settings().password(), Some("pw"));
        }
        let other: Vec<String> =
            ["redis://:pw@a:1", "redis://:other@b:2"].map(str::to_owned).into();
        let err = cluster_nodes(&other, &other).unwrap_err().to_string();
        assert!(err.contains("other credentials"), "{err}");
        let none: Vec<String> = ["redis://a:1", "redis://b:2"].map(str::to_owned).into();
        assert!(
            cluster_nodes(&none, &none)
                .unwrap()
                .iter()
                .all(|i| i.redis_settings().password().is_none())
        );
    }
}
