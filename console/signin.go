package console

import (
	"errors"
	"net/http"
)

type signinData struct {
	Username string
	Token    string // the sign-in form's CSRF token (double-submitted with a cookie)
}

// signinPage shows the form. Before a session exists the CSRF token is a
// random value both in a cookie and in the form, and the two must match.
func (c *Console) signinPage(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil && c.sessions.get(ck.Value) != nil {
		http.Redirect(w, r, "/keys", http.StatusSeeOther)
		return
	}
	c.renderSignin(w, r, http.StatusOK, "", "")
}

func (c *Console) renderSignin(w http.ResponseWriter, r *http.Request, status int, username, msg string) {
	tok := randomID()
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: tok, Path: "/signin", MaxAge: 3600,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.render(w, r, status, "signin.html", view{Title: "Sign in", Error: msg,
		Data: signinData{Username: username, Token: tok}})
}

func (c *Console) signin(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(signinCookie)
	if err != nil || !sameSecret(r.PostFormValue("csrf"), ck.Value) {
		c.render(w, r, http.StatusForbidden, "error.html", view{Title: "Form expired",
			Error: "This sign-in form has expired or did not come from this console. Reload the page and sign in again."})
		return
	}
	username, password := r.PostFormValue("username"), r.PostFormValue("password")
	if username == "" || password == "" || len(username) > 256 {
		c.renderSignin(w, r, http.StatusBadRequest, username, "Enter your username and password.")
		return
	}
	// Both buckets are charged on every attempt: the per-address one stops
	// spraying many usernames, the per-username one stops guessing one password.
	okAddr, okUser := c.byAddr.allow(clientAddr(r)), c.byUser.allow(username)
	if !okAddr || !okUser {
		c.log.Warn("sign-in rate limited", "user", username, "client", clientAddr(r))
		c.renderSignin(w, r, http.StatusTooManyRequests, username, "Too many sign-in attempts. Wait a minute, then try again.")
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	token, err := c.vault.login(ctx, username, password)
	if err != nil {
		var ve *vaultError
		msg := plainError(err)
		if errors.As(err, &ve) && ve.status < 500 {
			msg = "The username or password is not right. Try again."
		}
		c.log.Info("sign-in failed", "user", username, "client", clientAddr(r), "error", err)
		c.renderSignin(w, r, http.StatusUnauthorized, username, msg)
		return
	}
	id, err := c.vault.whoAmI(ctx, token)
	if err != nil || id.Tenant == "" {
		c.revokeToken(token)
		msg := "Your account is not linked to an organization. Ask your platform operator to set the tenant of your Vault identity."
		if err != nil {
			msg = plainError(err)
		}
		c.log.Info("sign-in refused: no tenant", "user", username, "error", err)
		c.renderSignin(w, r, http.StatusForbidden, username, msg)
		return
	}
	user := id.DisplayName
	if user == "" {
		user = username
	}
	// A new session id at every sign-in: no session fixation.
	sess := c.sessions.create(token, user, id.Tenant, id.TTL)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sess.id, Path: "/",
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: "/signin", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.log.Info("signed in", "user", username, "tenant", id.Tenant)
	http.Redirect(w, r, "/keys", http.StatusSeeOther)
}

// signout ends the session and revokes its Vault token.
func (c *Console) signout(w http.ResponseWriter, r *http.Request, sess *session) {
	if token := c.sessions.remove(sess.id); token != "" {
		c.revokeToken(token)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}
