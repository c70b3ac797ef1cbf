# Reads the fault suite's summary lines (tab-separated, one per scenario,
# as faulttest.Figure.Line writes them: scenario, acknowledged, lost,
# duplicated, wrongly deleted, human steps, recovery seconds or "-",
# longest insert ms or "-", note), prints them as a Markdown table with
# the notes below it, and exits 1 when a scenario lost, duplicated or
# wrongly deleted an event, needed a human step, or took 10 minutes or
# more to recover, or when there is no line at all.
BEGIN { FS = "\t"; bad = 0 }
NF >= 8 {
  n++
  printf "%s| %s | %s | %s | %s | %s | %s | %s | %s |\n",
    (n == 1 ? "| scenario | events acknowledged | lost | duplicated | wrongly deleted | human steps | time to recover | longest insert |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n" : ""),
    $1, $2, $3, $4, $5, $6, ($7 == "-" ? "-" : $7 " s"), ($8 == "-" ? "-" : $8 " ms")
  notes[n] = "- " $1 ": " $9
  for (i = 3; i <= 6; i++) if ($i != "0") { problems = problems "\n  " $1 ": " col[i] " is " $i; bad = 1 }
  if ($7 != "-" && $7 + 0 >= 600) { problems = problems "\n  " $1 ": recovery took " $7 " s (10 minutes or more)"; bad = 1 }
}
END {
  if (n == 0) { print "no scenario wrote a figure"; exit 1 }
  print ""
  for (i = 1; i <= n; i++) print notes[i]
  if (bad) { print "\nfigures that must be zero or under 10 minutes are not:" problems; exit 1 }
}
BEGIN { col[3] = "lost"; col[4] = "duplicated"; col[5] = "wrongly deleted"; col[6] = "human steps" }
