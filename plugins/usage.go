package plugins

import (
	"context"
	"time"
)

// UsageReporter is a plugin that keeps usage against budgets (the quota
// plugin), for the admin service: GET /usage lists it, DELETE
// /usage/{user} resets it, and its metrics export it.
type UsageReporter interface {
	// Usage lists the usage the instance keeps, for the current periods.
	Usage(ctx context.Context) ([]Usage, error)
	// ResetUsage forgets the usage of subject ("user:alice",
	// "group:staff", "client:192.0.2.1") and says how many counters it
	// removed.
	ResetUsage(ctx context.Context, subject string) (int, error)
}

// Usage is one subject's usage of one budget.
type Usage struct {
	Plugin string `json:"plugin"`
	// Quota is the budget's name.
	Quota string `json:"quota"`
	// Per is "user", "group" or "client"; Subject names which.
	Per     string `json:"per"`
	Subject string `json:"subject"`
	// Direction is "up", "down" or "total".
	Direction string `json:"direction"`
	// Used and Limit are bytes.
	Used  int64 `json:"used"`
	Limit int64 `json:"limit"`
	// PeriodEnd is when a calendar period's usage starts again; zero for
	// a rolling window, whose length Window gives.
	PeriodEnd time.Time `json:"period_end,omitzero"`
	Window    string    `json:"window,omitempty"`
}
