#!/bin/bash
# Minimal PKI for the single-node cluster of scripts/cluster.sh (openssl only): a CA, serving and
# client certificates, the service-account key pair and one kubeconfig per component.
set -euo pipefail
umask 077   # private keys: readable by root only
D=${1:?usage: mkpki.sh PKI_DIR}; NODE_IP=${NODE_IP:-10.250.255.1}; NODE=${NODE:-cpu-pipeline-node}
mkdir -p $D; cd $D
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=cpu-pipeline-ca" 2>/dev/null
openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
mk() { # name CN O [SANs]
  local n=$1 cn=$2 o=$3 san=${4:-}
  openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr -subj "/CN=$cn${o:+/O=$o}" 2>/dev/null
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=critical,digitalSignature,keyEncipherment";
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san"; else echo "extendedKeyUsage=clientAuth"; fi; } > $n.ext
  openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $n.crt -days 3650 -extfile $n.ext 2>/dev/null
  rm -f $n.csr $n.ext
}
mk apiserver kube-apiserver "" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:10.96.0.1,IP:$NODE_IP"
mk admin kubernetes-admin system:masters
mk controller-manager system:kube-controller-manager ""
mk scheduler system:kube-scheduler ""
mk kubelet "system:node:$NODE" system:nodes
mk kube-proxy system:kube-proxy ""
mk apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
# kubeconfigs
for u in admin controller-manager scheduler kubelet kube-proxy; do
cat > $u.kubeconfig <<KC
apiVersion: v1
kind: Config
clusters:
- name: cpu-pipeline
  cluster: {certificate-authority: $D/ca.crt, server: "https://$NODE_IP:6443"}
users:
- name: $u
  user: {client-certificate: $D/$u.crt, client-key: $D/$u.key}
contexts:
- name: default
  context: {cluster: cpu-pipeline, user: $u}
current-context: default
KC
done
echo "PKI done in $D"
