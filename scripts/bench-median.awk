# Reads `go test -bench` output and prints, per benchmark and metric, the
# median over the runs (-count N) next to every value seen.
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name)
  for (i = 3; i < NF; i += 2) {
    key = name " " $(i + 1)
    if (!(key in n)) order[++keys] = key
    vals[key, ++n[key]] = $i
  }
}
END {
  for (k = 1; k <= keys; k++) {
    key = order[k]; m = n[key]
    for (i = 1; i <= m; i++) v[i] = vals[key, i] + 0
    for (i = 2; i <= m; i++) { x = v[i]; j = i - 1; while (j > 0 && v[j] > x) { v[j + 1] = v[j]; j-- } v[j + 1] = x }
    med = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    list = ""; for (i = 1; i <= m; i++) list = list (i > 1 ? " " : "") vals[key, i]
    printf "%-22s %-20s median %-12g of %d: %s\n", split(key, parts, " ") ? parts[1] : key, parts[2], med, m, list
  }
}
