#!/bin/bash
# ducklake-cni: the node network daemon of ducklake-infra's kind node image.
# kind's own kindnetd is a nested Go module the module proxy does not serve, so
# this small daemon does the same job for our clusters:
#  - writes the CNI config (ptp + host-local on this node's podCIDR + portmap),
#  - routes other nodes' podCIDRs via their InternalIP,
#  - masquerades pod traffic that leaves the cluster's pod subnet.
# It reads Nodes through the API server with its ServiceAccount token.
set -euo pipefail
: "${NODE_NAME:?NODE_NAME must be set (downward API)}"
: "${POD_SUBNET:?POD_SUBNET must be set}"
API="https://${KUBERNETES_SERVICE_HOST}:${KUBERNETES_SERVICE_PORT}"
SA=/var/run/secrets/kubernetes.io/serviceaccount
CNI_CONF=/etc/cni/net.d/10-ducklake.conflist
INTERVAL="${INTERVAL:-10}"

api() {
  curl -sSf --max-time 10 --cacert "$SA/ca.crt" \
    -H "Authorization: Bearer $(cat "$SA/token")" "$API$1"
}

write_cni() {
  local cidr="$1" tmp
  tmp="$(mktemp "${CNI_CONF}.XXXX")"
  cat > "$tmp" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "ducklake",
  "plugins": [
    {"type": "ptp", "ipMasq": false, "mtu": 1500,
     "ipam": {"type": "host-local", "dataDir": "/run/cni-ipam-state",
              "ranges": [[{"subnet": "$cidr"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
  if ! cmp -s "$tmp" "$CNI_CONF"; then
    mv "$tmp" "$CNI_CONF"
    echo "wrote $CNI_CONF for podCIDR $cidr"
  else
    rm -f "$tmp"
  fi
}

masquerade() {
  iptables -t nat -N DUCKLAKE-MASQ 2>/dev/null || true
  iptables -t nat -C POSTROUTING -j DUCKLAKE-MASQ 2>/dev/null \
    || iptables -t nat -A POSTROUTING -j DUCKLAKE-MASQ
  iptables -t nat -C DUCKLAKE-MASQ -d "$POD_SUBNET" -j RETURN 2>/dev/null \
    || iptables -t nat -A DUCKLAKE-MASQ -d "$POD_SUBNET" -j RETURN
  iptables -t nat -C DUCKLAKE-MASQ -s "$POD_SUBNET" -j MASQUERADE 2>/dev/null \
    || iptables -t nat -A DUCKLAKE-MASQ -s "$POD_SUBNET" -j MASQUERADE
}

while true; do
  if nodes="$(api /api/v1/nodes)"; then
    own="$(jq -r --arg n "$NODE_NAME" '.items[] | select(.metadata.name==$n) | .spec.podCIDR // empty' <<<"$nodes")"
    if [ -n "$own" ]; then
      write_cni "$own"
      masquerade
      jq -r --arg n "$NODE_NAME" '.items[] | select(.metadata.name!=$n) | select(.spec.podCIDR)
        | [.spec.podCIDR, (.status.addresses[] | select(.type=="InternalIP") | .address)] | @tsv' <<<"$nodes" |
      while IFS=$'\t' read -r cidr ip; do
        [ -n "$ip" ] && ip route replace "$cidr" via "$ip" || true
      done
    else
      echo "node $NODE_NAME has no podCIDR yet"
    fi
  else
    echo "cannot list nodes (API server not reachable yet?)"
  fi
  sleep "$INTERVAL"
done
