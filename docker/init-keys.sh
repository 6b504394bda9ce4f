#!/bin/sh
# One-shot: make the line's CURVE keypairs once (kept in the `keys` volume) and the allow-list.
set -e
mkdir -p /keys/secret /keys/allowed
for name in cam0 node subscriber; do
  [ -f "/keys/secret/$name.key_secret" ] || ssdnet keys /keys/secret --name "$name"
done
cp /keys/secret/node.key /keys/secret/subscriber.key /keys/allowed/
