module github.com/trailguard/trailguard

go 1.26
