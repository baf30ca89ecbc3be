// The Prometheus text format (docs/metrics.md), as much as the dashboard reads of it.

// Parses the exposition into samples: name -> [{labels, value}].
export function parseMetrics(text) {
  const samples = new Map();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    if (match[3]) {
      for (const pair of match[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    }
    const value = match[4] === "+Inf" ? Infinity : Number(match[4]);
    if (!samples.has(match[1])) samples.set(match[1], []);
    samples.get(match[1]).push({ labels, value });
  }
  return {
    samples,
    // The value of an unlabelled sample (or the sum over its labels), or undefined.
    value(name) {
      const list = samples.get(name);
      return list ? list.reduce((s, x) => s + x.value, 0) : undefined;
    },
  };
}

// A histogram's observations between two scrapes: count, sum and the upper bound of the bucket
// holding the 99th percentile. With no previous scrape, everything since the node started.
export function histogramDelta(now, before, name) {
  const buckets = (m) => (m && m.samples.get(name + "_bucket")) || [];
  const value = (m, suffix) => (m ? m.value(name + suffix) || 0 : 0);
  const count = value(now, "_count") - value(before, "_count");
  const sum = value(now, "_sum") - value(before, "_sum");
  const old = new Map(buckets(before).map((b) => [b.labels.le, b.value]));
  let p99 = Infinity;
  for (const b of buckets(now)) {
    const n = b.value - (old.get(b.labels.le) || 0);
    if (count > 0 && n >= 0.99 * count) {
      p99 = b.labels.le === "+Inf" ? Infinity : Number(b.labels.le);
      break;
    }
  }
  return { count, sum, p99 };
}
