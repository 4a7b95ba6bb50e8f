package debpkg

import (
	"errors"
	"fmt"
	"slices"
)

// Index holds an archive's records by package name, and which packages
// provide each virtual name.
type Index struct {
	byName    map[string]*Record
	providers map[string][]string // virtual name -> real packages, sorted
}

// NewIndex indexes records. The first record of a name wins: `apt-cache
// dumpavail` prints one version of each package, `apt-cache show
// --no-all-versions` the candidate.
func NewIndex(records []Record) *Index {
	x := &Index{byName: map[string]*Record{}, providers: map[string][]string{}}
	for i := range records {
		r := &records[i]
		if _, dup := x.byName[r.Package]; dup {
			continue
		}
		x.byName[r.Package] = r
		for _, v := range r.Provides {
			if !slices.Contains(x.providers[v], r.Package) {
				x.providers[v] = append(x.providers[v], r.Package)
			}
		}
	}
	for _, ps := range x.providers {
		slices.Sort(ps)
	}
	return x
}

// Record returns the record of the real package name.
func (x *Index) Record(name string) (*Record, bool) {
	r, ok := x.byName[name]
	return r, ok
}

// Providers returns the real packages that provide name, sorted.
func (x *Index) Providers(name string) []string { return x.providers[name] }

// Has reports whether name is a real package or a virtual one that some
// package provides.
func (x *Index) Has(name string) bool {
	_, ok := x.byName[name]
	return ok || len(x.providers[name]) > 0
}

// UnknownError is a package name the archive knows neither as a package
// nor as a virtual package that something provides.
type UnknownError struct {
	Name string // the name
	By   string // the package whose dependency names it; "": it was asked for
}

func (e *UnknownError) Error() string {
	if e.By == "" {
		return fmt.Sprintf("package %q is not in the archive", e.Name)
	}
	return fmt.Sprintf("%s depends on %q, which is not in the archive", e.By, e.Name)
}

// Closure is what a set of packages needs.
type Closure struct {
	// Fetch are the packages to get, in the order they were reached:
	// the names asked for and, following Pre-Depends and Depends, what
	// they need that the base does not have.
	Fetch []*Record
	// Base are the base packages the closure relies on, in the order
	// they were reached.
	Base []string
}

// Resolve returns the closure of names over x: each name and, recursively,
// what its Pre-Depends and Depends name (Recommends and Suggests are not
// followed). base are the packages already in the image: they satisfy
// dependencies, with what they provide, and are neither fetched nor
// followed (what they need is the base's business).
//
// A relation "a | b" is satisfied by an alternative already chosen or in
// the base, else by the first alternative that is a real package, else by
// a provider of the first alternative that is virtual. A virtual name is
// satisfied by a provider already chosen or in the base, else by the
// first provider in name order, so the same archive gives the same
// closure. Cycles are followed once.
//
// Names the archive does not have give *UnknownError values, all of the
// names asked for at once (joined with errors.Join).
func Resolve(x *Index, names []string, base []string) (*Closure, error) {
	r := &resolver{x: x, base: map[string]bool{}, chosen: map[string]bool{}, provided: map[string]string{}, c: &Closure{}}
	for _, b := range base {
		r.base[b] = true
		if rec, ok := x.byName[b]; ok {
			for _, v := range rec.Provides {
				if _, ok := r.provided[v]; !ok {
					r.provided[v] = b
				}
			}
		}
	}
	var unknown []error
	for _, n := range names {
		if !x.Has(n) && !r.base[n] {
			unknown = append(unknown, &UnknownError{Name: n})
		}
	}
	if len(unknown) > 0 {
		return nil, errors.Join(unknown...)
	}
	for _, n := range names {
		if err := r.want(Relation{n}, ""); err != nil {
			return nil, err
		}
	}
	for len(r.queue) > 0 {
		rec := r.queue[0]
		r.queue = r.queue[1:]
		for _, rels := range [][]Relation{rec.PreDepends, rec.Depends} {
			for _, rel := range rels {
				if err := r.want(rel, rec.Package); err != nil {
					return nil, err
				}
			}
		}
	}
	return r.c, nil
}

type resolver struct {
	x        *Index
	base     map[string]bool
	chosen   map[string]bool   // fetched or base packages reached
	provided map[string]string // virtual name -> the base or chosen package providing it
	queue    []*Record         // reached, dependencies not yet followed
	c        *Closure
}

// want satisfies one relation, choosing a package if none satisfies it yet.
func (r *resolver) want(rel Relation, by string) error {
	for _, n := range rel {
		if r.chosen[n] {
			return nil
		}
		if r.base[n] {
			r.reach(n)
			return nil
		}
		if p, ok := r.provided[n]; ok {
			r.reach(p)
			return nil
		}
	}
	for _, n := range rel {
		if _, ok := r.x.byName[n]; ok {
			r.reach(n)
			return nil
		}
	}
	for _, n := range rel {
		if ps := r.x.providers[n]; len(ps) > 0 {
			r.reach(ps[0])
			return nil
		}
	}
	return &UnknownError{Name: rel[0], By: by}
}

// reach marks the package name as part of the closure and, unless it is
// in the base, queues its dependencies.
func (r *resolver) reach(name string) {
	if r.chosen[name] {
		return
	}
	r.chosen[name] = true
	if r.base[name] {
		r.c.Base = append(r.c.Base, name)
		return
	}
	rec := r.x.byName[name]
	r.c.Fetch = append(r.c.Fetch, rec)
	for _, v := range rec.Provides {
		if _, ok := r.provided[v]; !ok {
			r.provided[v] = name
		}
	}
	r.queue = append(r.queue, rec)
}
