# A plain-text notice, for the data-patch dry-run tests (issue 18): the dry run counts the mails a
# patch would send and delivers none; the real run delivers them (config: the :file delivery).
class NoticeMailer < ActionMailer::Base
  default from: "ops@example.test"

  def notice(to, subject)
    mail(to: to, subject: subject, body: "#{subject}\n", content_type: "text/plain")
  end
end
