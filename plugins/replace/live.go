package replace

import (
	"regexp/syntax"
	"sync"
	"unicode/utf8"
)

// liveness answers, for a window of stream bytes, where the earliest
// match that later bytes could still complete or change begins. It runs
// the regexp's program as a Pike VM without captures or priorities,
// starting a thread at every rune of the window's last maxMatch-1 bytes:
// a thread still waiting for a rune at the window's end is a match in
// progress. Starts further back would make matches longer than maxMatch,
// which are not tracked.
//
// The answer over-approximates (it ignores that an earlier match may
// consume a start, and leftmost-first priorities), so it may hold a few
// bytes more than needed, never fewer.
type liveness struct {
	prog     *syntax.Prog
	maxMatch int
	pool     sync.Pool // *machine
}

func newLiveness(prog *syntax.Prog, maxMatch int) *liveness {
	l := &liveness{prog: prog, maxMatch: maxMatch}
	l.pool.New = func() any {
		n := len(prog.Inst)
		return &machine{cur: newThreadSet(n), next: newThreadSet(n)}
	}
	return l
}

type thread struct {
	pc    uint32
	start int
}

// threadSet is a sparse set of program counters, each with the earliest
// start that reached it.
type threadSet struct {
	sparse []uint32
	dense  []thread
}

func newThreadSet(n int) threadSet {
	return threadSet{sparse: make([]uint32, n), dense: make([]thread, 0, n)}
}

func (s *threadSet) has(pc uint32) bool {
	i := s.sparse[pc]
	return int(i) < len(s.dense) && s.dense[i].pc == pc
}

func (s *threadSet) add(pc uint32, start int) {
	s.sparse[pc] = uint32(len(s.dense))
	s.dense = append(s.dense, thread{pc, start})
}

type machine struct {
	cur, next threadSet
	stack     []uint32
}

// holdFrom returns the offset in w from which bytes must be held: the
// start of the earliest match in progress at w's end, len(w) if none.
func (l *liveness) holdFrom(w []byte) int {
	m := l.pool.Get().(*machine)
	defer l.pool.Put(m)
	m.cur.dense, m.next.dense = m.cur.dense[:0], m.next.dense[:0]

	pos := runeBoundary(w, len(w)-(l.maxMatch-1))
	for {
		// Threads are added in order of start, so a program counter
		// keeps the earliest start that reaches it.
		l.closure(m, &m.cur, uint32(l.prog.Start), pos)
		if pos == len(w) || !utf8.FullRune(w[pos:]) {
			// At the end, or before a rune cut by the read: whatever
			// waits may still go on.
			break
		}
		r, size := utf8.DecodeRune(w[pos:])
		m.next.dense = m.next.dense[:0]
		for _, t := range m.cur.dense {
			if consumes(&l.prog.Inst[t.pc], r) {
				l.closure(m, &m.next, l.prog.Inst[t.pc].Out, t.start)
			}
		}
		m.cur, m.next = m.next, m.cur
		pos += size
	}
	for _, t := range m.cur.dense {
		if waits(l.prog.Inst[t.pc].Op) {
			return t.start
		}
	}
	return len(w)
}

// closure adds pc and every instruction reachable from it without
// consuming a rune to s, with start.
func (l *liveness) closure(m *machine, s *threadSet, pc uint32, start int) {
	stack := append(m.stack[:0], pc)
	for len(stack) > 0 {
		pc = stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if s.has(pc) {
			continue
		}
		s.add(pc, start)
		inst := &l.prog.Inst[pc]
		switch inst.Op {
		case syntax.InstAlt, syntax.InstAltMatch:
			stack = append(stack, inst.Arg, inst.Out)
		case syntax.InstCapture, syntax.InstNop:
			stack = append(stack, inst.Out)
		}
	}
	m.stack = stack
}

// waits reports whether a thread at an instruction of op needs the next
// rune to go on. Empty-width assertions are rejected at config time; were
// one there, it would count as waiting.
func waits(op syntax.InstOp) bool {
	switch op {
	case syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny,
		syntax.InstRuneAnyNotNL, syntax.InstEmptyWidth:
		return true
	}
	return false
}

func consumes(inst *syntax.Inst, r rune) bool {
	switch inst.Op {
	case syntax.InstRune1:
		return r == inst.Rune[0]
	case syntax.InstRune:
		return inst.MatchRune(r)
	case syntax.InstRuneAny:
		return true
	case syntax.InstRuneAnyNotNL:
		return r != '\n'
	}
	return false
}

// runeBoundary returns the first offset at or after i (clamped to w) where
// a rune begins when w is decoded from its start, as the regexp package
// does: i itself unless it falls inside a valid multi-byte encoding.
func runeBoundary(w []byte, i int) int {
	if i <= 0 {
		return 0
	}
	if i >= len(w) || utf8.RuneStart(w[i]) {
		return min(i, len(w))
	}
	for q := i - 1; q >= 0 && q > i-utf8.UTFMax; q-- {
		if utf8.RuneStart(w[q]) {
			_, size := utf8.DecodeRune(w[q:])
			return max(i, q+size)
		}
	}
	return i
}
