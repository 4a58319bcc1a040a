import Glibc
import GhostImage

/// One writer per image directory. After a node failure Slurm can start the
/// requeued job while the old copy still runs (until slurmd kills it), so a
/// new ghost may wait for the old one to go away instead of failing at once.
public enum Locking {
    public static func acquire(_ store: ImageStore, waitingUpTo seconds: Double) throws(GhostError) {
        let deadline = Clock.now() + seconds
        var said = false
        while true {
            do {
                try store.lockForWriting()
                return
            } catch {
                guard case .locked(_, let holder) = error, Clock.now() < deadline else { throw .image(error) }
                if !said {
                    Log.info("\(store.path) is in use by ghost \(holder); waiting up to \(Int(seconds)) s for it to stop")
                    said = true
                }
                usleep(500_000)
            }
        }
    }
}
