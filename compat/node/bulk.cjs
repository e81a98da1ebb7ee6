'use strict'
// Ships N events to the collector with the official Node.js client's
// helpers.bulk, authenticated with an Elasticsearch-style API key, and
// prints the helper's result as one JSON line. Exit status 1 when any
// document failed. Run by node_test.go; needs @elastic/elasticsearch on
// NODE_PATH.
const { Client } = require('@elastic/elasticsearch')

const [url, id, key, nArg, svc] = process.argv.slice(2)
const n = Number(nArg)

async function * events () {
  for (let i = 0; i < n; i++) {
    yield {
      '@timestamp': new Date().toISOString(),
      event: {
        id: `${svc}-${String(i).padStart(6, '0')}`,
        kind: 'event',
        category: ['authentication'],
        type: ['start'],
        action: 'authn_login_fail',
        outcome: 'failure',
        reason: 'bad password'
      },
      source: { ip: `203.0.113.${i % 250 + 1}` },
      user: { name: `user${String(i % 1000).padStart(4, '0')}` },
      http: { response: { status_code: 401 } },
      url: { path: '/api/login' },
      service: { name: svc }
    }
  }
}

async function main () {
  const client = new Client({ node: url, auth: { apiKey: { id, api_key: key } }, requestTimeout: 60000 })
  // info() goes through the client's product check, as every call does.
  const info = await client.info()
  const dropped = []
  const result = await client.helpers.bulk({
    datasource: events(),
    onDocument () { return { create: { _index: 'logs-compat-node' } } },
    onDrop (doc) { dropped.push({ status: doc.status, error: doc.error }) },
    flushBytes: 256 * 1024,
    concurrency: 2,
    retries: 3
  })
  console.log(JSON.stringify({ version: info.version.number, total: result.total, successful: result.successful, failed: result.failed, retry: result.retry, aborted: result.aborted, time: result.time, dropped: dropped.slice(0, 3) }))
  await client.close()
  if (result.failed !== 0 || dropped.length !== 0 || result.successful !== n || result.aborted) process.exit(1)
}

main().catch(err => { console.error(err && err.name, err && err.message); process.exit(2) })
