desc "Delete expired sessions and cancelled orders older than 90 days"
task cleanup: :environment do
  args = SampleApp::Work.rake_args("cleanup")
  SampleApp::Work.run("task: cleanup", args) do
    Session.where("expires_at < ?", Time.current).delete_all
    Order.where(status: "cancelled").where("updated_at < ?", 90.days.ago).delete_all
    puts "cleanup"
  end
end
