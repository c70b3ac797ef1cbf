package web

import (
	"github.com/auditlog/auditlog/service"
)

// subject serves the history of one kept-forever subject of model: a
// project (/projects/{id}), an organization (/orgs/{id}) or a team
// (/orgs/{org}/teams/{team}, subject "ORG/TEAM"). Those who manage it
// (Viewer.Manages) see it as maintainers; everyone else sees the public
// view; an admin sees everything and the read is recorded as on the
// console.
func (h *Handler) subject(model service.Model) func(*request) (*result, error) {
	return func(r *request) (*result, error) {
		id := r.PathValue("id")
		if model == service.ModelTeam {
			id = service.TeamSubject(r.PathValue("org"), r.PathValue("team"))
		}
		q, opts, err := listQuery(r)
		if err != nil {
			return nil, err
		}
		p, err := h.log.SubjectEvents(r.Context(), model, id, opts)
		if err != nil {
			return nil, err
		}
		aud := public
		if r.viewer.Manages(model, id) {
			aud = maintainer
		}
		f := service.SubjectFilter(model, id, opts)
		if r.viewer != nil && r.viewer.Admin {
			aud = administrator
			if err := h.recordRead(r.Context(), r, string(model), f); err != nil {
				return nil, err
			}
		}
		data := h.eventsPage(r, q, p, func(*service.Event) audience { return aud })
		data.Subject, data.Maintainer = subjectOf(model, id), aud != public
		data.ProjectID, data.OrganizationID, data.TeamID = f.ProjectID, f.OrganizationID, f.TeamID
		return &result{Title: "History of " + data.Subject.Name, Page: "project", Data: data}, nil
	}
}

// subjectInfo is what a history page says about its subject.
type subjectInfo struct {
	// Kind is "project", "organization" or "team"; Name is how the page
	// names the subject ("acme", "team release of acme").
	Kind, Name string
	// Managers are who see it as maintainers ("maintain this project",
	// "own this organization").
	Managers string
}

func subjectOf(model service.Model, id string) subjectInfo {
	switch model {
	case service.ModelOrganization:
		return subjectInfo{Kind: "organization", Name: id, Managers: "own this organization"}
	case service.ModelTeam:
		org, team, _ := service.SplitTeamSubject(id)
		return subjectInfo{Kind: "team", Name: "team " + team + " of " + org, Managers: "own this team's organization"}
	}
	return subjectInfo{Kind: "project", Name: id, Managers: "maintain this project"}
}
