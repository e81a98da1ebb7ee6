// Package doccheck holds the tests that keep README.md and docs/ true to
// the code: every YAML example loads with the configuration parser it is
// written for, every Go example compiles and passes go vet against this
// checkout, every configuration key the code reads is named in the
// document that describes it, every default the documents state is
// the default the code applies, and every relative link of every Markdown
// file leads to a file that exists and, with a #fragment, to a heading or
// anchor of it. It has no code of its own.
package doccheck
